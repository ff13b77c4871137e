{#-
  Every order up to as_of, attributed to one profile by its strongest identifier (user_id, then
  email, then phone). `counts_as_purchase` is false for statuses in var excluded_order_statuses
  (cancelled, refunded...): those never add to lifetime value or order counts.
-#}
with orders as (

    select *
    from {{ ref('stg_orders') }}
    where ordered_at <= {{ headwater.as_of_timestamp() }}

)

select
    orders.order_id,
    coalesce(by_user.profile_id, by_email.profile_id, by_phone.profile_id) as profile_id,
    orders.total,
    orders.currency,
    orders.status,
    orders.cart_id,
    orders.email,
    orders.phone,
    orders.ordered_at,
    coalesce(orders.status, '') not in
        {{ headwater.sql_string_list(headwater.profile_setting('excluded_order_statuses')) }}
        as counts_as_purchase
from orders
left join {{ ref('identity_map') }} as by_user
    on by_user.identifier_type = 'user_id' and by_user.identifier_value = orders.user_id
left join {{ ref('identity_map') }} as by_email
    on by_email.identifier_type = 'email' and by_email.identifier_value = orders.email
left join {{ ref('identity_map') }} as by_phone
    on by_phone.identifier_type = 'phone' and by_phone.identifier_value = orders.phone
where coalesce(by_user.profile_id, by_email.profile_id, by_phone.profile_id) is not null
