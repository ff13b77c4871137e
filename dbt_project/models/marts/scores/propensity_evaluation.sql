{#-
  How well each score ranks, per split: AUC (the probability that a random positive scores
  above a random negative, ties counting one half: the Mann-Whitney statistic over groups of
  equal scores), log loss and calibration (mean predicted vs observed rate). The eval split is
  out of time: later cutoff, labels the fit never saw.
-#}
{%- set features = headwater.propensity_features() %}
with params as (

    {{ headwater.propensity_parameters_wide(features) }}

),

scored as (

    select
        rows.score_name,
        rows.split,
        rows.cutoff_at,
        rows.label,
        {{ headwater.propensity_probability(features, 'rows', 'params') }} as p
    from {{ ref('propensity_training_set') }} as rows
    join params on params.score_name = rows.score_name

),

by_score as (

    select score_name, split, p, sum(label) as pos, count(*) - sum(label) as neg
    from scored
    group by score_name, split, p

),

ranked as (

    select
        *,
        coalesce(sum(neg) over (
            partition by score_name, split order by p
            rows between unbounded preceding and 1 preceding
        ), 0) as neg_below
    from by_score

),

auc as (

    select
        score_name,
        split,
        sum(pos * neg_below + 0.5 * pos * neg) / nullif(sum(pos) * sum(neg), 0) as auc
    from ranked
    group by score_name, split

)

select
    scored.score_name,
    scored.split,
    min(scored.cutoff_at) as cutoff_at,
    count(*) as rows_evaluated,
    sum(scored.label) as positives,
    avg(cast(scored.label as double)) as observed_rate,
    avg(scored.p) as mean_predicted,
    -avg(scored.label * ln(greatest(scored.p, 1e-15))
        + (1 - scored.label) * ln(greatest(1 - scored.p, 1e-15))) as log_loss,
    max(auc.auc) as auc
from scored
join auc on auc.score_name = scored.score_name and auc.split = scored.split
group by scored.score_name, scored.split
