{{ config(tags=['gold_tier']) }}
{#- Loyalty tier gold or platinum, from the CRM. -#}
select profile_id, loyalty_tier
from {{ ref('customer_profiles') }}
where loyalty_tier in ('gold', 'platinum')
