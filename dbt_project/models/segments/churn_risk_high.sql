{{ config(tags=['churn_risk_high']) }}
{#- Customers whose churn_risk is at least var churn_risk_high_min_score. -#}
select profile_id, churn_risk
from {{ ref('profile_scores') }}
where churn_risk >= {{ headwater.profile_setting('churn_risk_high_min_score') }}
