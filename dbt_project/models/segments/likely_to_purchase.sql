{{ config(tags=['likely_to_purchase']) }}
{#- The top var likely_to_purchase_top_fraction (10%) of scored profiles by
    purchase_propensity_30d. A relative cut: 30-day purchase rates are a few percent, so an
    absolute probability threshold would be empty in one shop and everyone in another. -#}
with ranked as (

    select
        profile_id,
        purchase_propensity_30d,
        percent_rank() over (order by purchase_propensity_30d) as score_percent_rank
    from {{ ref('profile_scores') }}
    where purchase_propensity_30d is not null

)

select profile_id, purchase_propensity_30d, score_percent_rank
from ranked
where score_percent_rank >= 1 - {{ headwater.profile_setting('likely_to_purchase_top_fraction') }}
