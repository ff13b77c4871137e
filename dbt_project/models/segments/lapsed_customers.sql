{{ config(tags=['lapsed_customers']) }}
{#- Customers whose last order is older than var lifecycle_at_risk_days (180). -#}
select profile_id, last_order_at
from {{ ref('customer_profiles') }}
where lifecycle_stage = 'lapsed'
