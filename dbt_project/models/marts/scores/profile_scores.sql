{#-
  Today's scores, one row per profile_id: the fitted models applied to the features at as_of.
  churn_risk (silent for the next churn_window_days) is null for profiles that never ordered;
  both are null for a profile with no activity up to as_of.
-#}
{%- set features = headwater.propensity_features() %}
with params as (

    {{ headwater.propensity_parameters_wide(features) }}

),

current_features as (

    select * from {{ ref('int_propensity_features') }} where cutoff_name = 'score'

),

profiles as (

    select distinct profile_id from {{ ref('identity_map') }}

)

select
    profiles.profile_id,
    {{ headwater.propensity_probability(features, 'f', 'purchase') }}
        as purchase_propensity_30d,
    case when f.has_ordered = 1 then
        {{ headwater.propensity_probability(features, 'f', 'churn') }}
    end as churn_risk,
    f.cutoff_at as scored_as_of
from profiles
left join current_features as f on f.profile_id = profiles.profile_id
left join params as purchase on purchase.score_name = 'purchase_propensity_30d'
left join params as churn on churn.score_name = 'churn_risk'
