{{ config(tags=['likely_to_purchase']) }}
{#- purchase_propensity_30d at least var likely_to_purchase_min_score. -#}
select profile_id, purchase_propensity_30d
from {{ ref('profile_scores') }}
where purchase_propensity_30d >= {{ headwater.profile_setting('likely_to_purchase_min_score') }}
