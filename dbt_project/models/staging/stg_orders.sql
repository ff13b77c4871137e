{{ config(materialized='table') }}

{#- One row per usable order; cart_id comes from the Order Completed event that names it.
    A table, like stg_events: identity resolution and the profile and measurement models all
    read it, and as a view each of them paid for its dedupe, normalization and cart lookup
    again. -#}
with orders as (

    select * from {{ ref('base_raw_orders') }}
    where quarantine_reason is null and collapse_reason is null

),

carts as (

    select order_id, min(cart_id) as cart_id
    from {{ ref('stg_events') }}
    where event_name = 'Order Completed' and order_id is not null and cart_id is not null
    group by order_id

)

select
    orders.order_id,
    orders.email,
    orders.phone,
    orders.user_id,
    orders.total,
    orders.currency,
    orders.status,
    orders.ordered_at,
    orders.line_items,
    carts.cart_id
from orders
left join carts on carts.order_id = orders.order_id
