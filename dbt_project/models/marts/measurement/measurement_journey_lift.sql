{#-
  Holdout lift per journey: treated against holdout subjects (journey_subjects), with 95%
  intervals for the differences (treated minus holdout).
  Conversion rate: share of subjects with a converting order in the window. Interval:
  Newcombe's hybrid score interval for a difference of proportions (method 10, from each
  group's Wilson score interval), which stays sensible at 0 or 100% and for small groups where
  the plain Wald interval collapses.
  Revenue per subject: mean net revenue per subject, zeros included. Interval: difference of
  means +/- z * Welch's standard error sqrt(s_t^2/n_t + s_h^2/n_h) with the normal quantile
  (large-sample; null while a group has fewer than 2 subjects).
  An interval that excludes 0 is a lift (or a loss) at the 95% level.
-#}
{%- set z = headwater.z_95() %}
with groups as (

    select
        journey,
        holdout,
        count(*) as n,
        sum(case when converted then 1 else 0 end) as converted,
        avg(revenue) as mean_revenue,
        var_samp(revenue) as var_revenue,
        sum(revenue) as revenue
    from {{ ref('journey_subjects') }}
    group by journey, holdout

),

paired as (

    select
        j.journey,
        coalesce(t.n, 0) as treated_subjects,
        coalesce(h.n, 0) as holdout_subjects,
        coalesce(t.converted, 0) as treated_conversions,
        coalesce(h.converted, 0) as holdout_conversions,
        cast(t.converted as double) / nullif(t.n, 0) as p_t,
        cast(h.converted as double) / nullif(h.n, 0) as p_h,
        cast(t.n as double) as n_t,
        cast(h.n as double) as n_h,
        t.mean_revenue as m_t,
        h.mean_revenue as m_h,
        t.var_revenue as v_t,
        h.var_revenue as v_h,
        coalesce(t.revenue, 0) as treated_revenue,
        coalesce(h.revenue, 0) as holdout_revenue
    from (select distinct journey from groups) as j
    left join groups as t on t.journey = j.journey and not t.holdout
    left join groups as h on h.journey = j.journey and h.holdout

),

wilson as (

    select
        *,
        (p_t + {{ z }} * {{ z }} / (2 * n_t)
            - {{ z }} * sqrt(p_t * (1 - p_t) / n_t + {{ z }} * {{ z }} / (4 * n_t * n_t)))
            / (1 + {{ z }} * {{ z }} / n_t) as l_t,
        (p_t + {{ z }} * {{ z }} / (2 * n_t)
            + {{ z }} * sqrt(p_t * (1 - p_t) / n_t + {{ z }} * {{ z }} / (4 * n_t * n_t)))
            / (1 + {{ z }} * {{ z }} / n_t) as u_t,
        (p_h + {{ z }} * {{ z }} / (2 * n_h)
            - {{ z }} * sqrt(p_h * (1 - p_h) / n_h + {{ z }} * {{ z }} / (4 * n_h * n_h)))
            / (1 + {{ z }} * {{ z }} / n_h) as l_h,
        (p_h + {{ z }} * {{ z }} / (2 * n_h)
            + {{ z }} * sqrt(p_h * (1 - p_h) / n_h + {{ z }} * {{ z }} / (4 * n_h * n_h)))
            / (1 + {{ z }} * {{ z }} / n_h) as u_h,
        sqrt(v_t / n_t + v_h / n_h) as revenue_se
    from paired

)

select
    journey,
    treated_subjects,
    holdout_subjects,
    treated_conversions,
    holdout_conversions,
    p_t as treated_conversion_rate,
    p_h as holdout_conversion_rate,
    p_t - p_h as conversion_rate_lift,
    (p_t - p_h) - sqrt((p_t - l_t) * (p_t - l_t) + (u_h - p_h) * (u_h - p_h))
        as conversion_rate_lift_low,
    (p_t - p_h) + sqrt((u_t - p_t) * (u_t - p_t) + (p_h - l_h) * (p_h - l_h))
        as conversion_rate_lift_high,
    p_t / nullif(p_h, 0) - 1 as relative_conversion_lift,
    cast(treated_revenue as double) as treated_revenue,
    cast(holdout_revenue as double) as holdout_revenue,
    m_t as treated_revenue_per_subject,
    m_h as holdout_revenue_per_subject,
    m_t - m_h as revenue_per_subject_lift,
    m_t - m_h - {{ z }} * revenue_se as revenue_per_subject_lift_low,
    m_t - m_h + {{ z }} * revenue_se as revenue_per_subject_lift_high,
    (m_t - m_h) * n_t as incremental_revenue
from wilson
