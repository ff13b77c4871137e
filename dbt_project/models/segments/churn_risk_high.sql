{{ config(tags=['churn_risk_high']) }}
{#- The top var churn_risk_high_top_fraction (20%) of customers by churn_risk (relative for the
    same reason as likely_to_purchase: most customers do not order in any given 30 days). -#}
with ranked as (

    select
        profile_id,
        churn_risk,
        percent_rank() over (order by churn_risk) as score_percent_rank
    from {{ ref('profile_scores') }}
    where churn_risk is not null

)

select profile_id, churn_risk, score_percent_rank
from ranked
where score_percent_rank >= 1 - {{ headwater.profile_setting('churn_risk_high_top_fraction') }}
