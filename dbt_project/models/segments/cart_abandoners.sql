{{ config(tags=['cart_abandoners']) }}
{#- Profiles with an open cart (items, no order for it or after it) untouched for longer than
    var cart_abandoned_after_minutes (30). -#}
select
    profile_id,
    open_cart_id as reason_cart_id,
    cart_updated_at
from {{ ref('customer_profiles') }}
where open_cart_id is not null
    and cart_updated_at < {{ headwater.add_minutes(headwater.as_of_timestamp(),
        -headwater.profile_setting('cart_abandoned_after_minutes')) }}
    and (last_order_at is null or last_order_at < cart_updated_at)
