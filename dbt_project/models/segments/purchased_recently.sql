{{ config(tags=['purchased_recently']) }}
{#- An order in the last var recent_purchase_days (30) days before as_of. -#}
select profile_id, last_order_at
from {{ ref('customer_profiles') }}
where last_order_at >= {{ headwater.add_days(headwater.as_of_timestamp(),
    -headwater.profile_setting('recent_purchase_days')) }}
