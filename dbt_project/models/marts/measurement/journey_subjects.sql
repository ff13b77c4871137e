{#-
  One row per journey and subject that entered it up to as_of, with their group and outcome:
  the unit of the holdout comparison (measurement_journey_lift).
  Subject: the resolved profile (the event's, else identity_map's for its identifier), or the
  identifier itself while unknown (such a subject has no orders, in either group).
  Group: the holdout flag of the subject's first entry (assignment is per subject).
  Outcome: the orders of the subject's profile placed within var attribution_window_days
  (default 3) after any of its entries, each order once; net revenue as in attribution_orders
  (refunded or cancelled orders are not conversions and count 0).
-#}
with entries as (

    select
        e.journey,
        coalesce(e.profile_id, m.profile_id) as profile_id,
        coalesce(e.profile_id, m.profile_id, e.identifier_type || ':' || e.identifier_value)
            as subject,
        e.holdout,
        e.occurred_at as entered_at
    from {{ ref('stg_activity_journey_events') }} as e
    left join {{ ref('identity_map') }} as m
        on e.profile_id is null
        and m.identifier_type = e.identifier_type
        and m.identifier_value = e.identifier_value
    where e.event in ('entered', 'restarted')
      and e.occurred_at <= {{ headwater.as_of_timestamp() }}

),

subjects as (

    select
        journey,
        subject,
        max(profile_id) as profile_id,
        min_by(holdout, entered_at) as holdout,
        count(*) as entries,
        min(entered_at) as first_entered_at
    from entries
    group by journey, subject

),

outcome_orders as (

    select distinct e.journey, e.subject, o.order_id, o.revenue, o.is_conversion
    from entries as e
    join {{ ref('attribution_orders') }} as o
        on o.profile_id = e.profile_id
        and o.ordered_at > e.entered_at
        and o.ordered_at <= {{ headwater.add_days('e.entered_at',
                                   headwater.measurement_setting('attribution_window_days')) }}

),

outcomes as (

    select
        journey,
        subject,
        sum(case when is_conversion then 1 else 0 end) as conversions,
        sum(revenue) as revenue
    from outcome_orders
    group by journey, subject

)

select
    s.journey,
    s.subject,
    s.profile_id,
    coalesce(s.holdout, false) as holdout,
    s.entries,
    s.first_entered_at,
    coalesce(o.conversions, 0) > 0 as converted,
    coalesce(o.conversions, 0) as conversions,
    cast(coalesce(o.revenue, 0) as double) as revenue
from subjects as s
left join outcomes as o on o.journey = s.journey and o.subject = s.subject
