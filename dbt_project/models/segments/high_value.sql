{{ config(tags=['high_value']) }}
{#- Customers in the top var high_value_top_fraction (10%) by lifetime value, among those with at
    least one order; a relative cut so that it means the same in any currency or catalog. -#}
with ranked as (

    select
        profile_id,
        lifetime_value,
        percent_rank() over (order by lifetime_value) as ltv_percent_rank
    from {{ ref('customer_profiles') }}
    where order_count > 0

)

select profile_id, lifetime_value, ltv_percent_rank
from ranked
where ltv_percent_rank >= 1 - {{ headwater.profile_setting('high_value_top_fraction') }}
