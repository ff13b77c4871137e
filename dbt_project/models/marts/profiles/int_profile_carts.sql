{#-
  One row per cart seen in Product Added / Product Removed events up to as_of, with its items
  and whether it is still open. A cart is closed when an Order Completed event or an order
  names it, when its owner placed any order at or after its last change (orders do not always
  carry a cart_id), or when removals emptied it. The owner is the profile of the cart's latest
  event. Items come from properties.products when the event carries an array, else from the
  event's own properties (the Segment spec puts a single product there).
-#}
with cart_events as (

    select message_id, profile_id, cart_id, event_name, products, properties, event_at
    from {{ ref('int_profile_events') }}
    where cart_id is not null and event_name in ('Product Added', 'Product Removed')

),

raw_lines as (

    select
        cart_events.message_id,
        cart_events.cart_id,
        cart_events.event_name,
        cart_events.event_at,
        {{ headwater.json_array_row_value('p') }} as item
    from cart_events, {{ headwater.json_array_rows('cart_events.products', 'p') }}
    where cart_events.products is not null

    union all

    select message_id, cart_id, event_name, event_at, properties as item
    from cart_events
    where products is null

),

lines as (

    select
        cart_id,
        event_at,
        coalesce(
            {{ headwater.trimmed(headwater.json_text('item', 'sku')) }},
            {{ headwater.trimmed(headwater.json_text('item', 'product_id')) }}
        ) as sku,
        {{ headwater.trimmed(headwater.json_text('item', 'name')) }} as name,
        {{ headwater.json_number('item', 'price') }} as price,
        case when event_name = 'Product Removed' then -1 else 1 end
            * cast(coalesce({{ headwater.json_number('item', 'quantity') }}, 1) as integer)
            as quantity
    from raw_lines

),

items as (

    select
        cart_id,
        sku,
        -- The latest name and price seen for the sku in this cart.
        max(name) as name,
        max(price) as price,
        sum(quantity) as quantity
    from lines
    where sku is not null
    group by cart_id, sku
    having sum(quantity) > 0

),

cart_items as (

    select
        cart_id,
        {{ headwater.json_agg_objects(
            [('sku', 'sku'), ('name', 'name'), ('quantity', 'quantity'), ('price', 'price')],
            'sku') }} as cart_items,
        sum(quantity * coalesce(price, 0)) as cart_value,
        sum(quantity) as item_count
    from items
    group by cart_id

),

carts as (

    select
        cart_id,
        min(event_at) as cart_started_at,
        max(event_at) as cart_updated_at
    from cart_events
    group by cart_id

),

owners as (

    select
        cart_id,
        profile_id,
        row_number() over (partition by cart_id order by event_at desc, message_id desc) as rn
    from cart_events

),

ordered_carts as (

    select cart_id from {{ ref('int_profile_events') }}
    where event_name = 'Order Completed' and cart_id is not null
    union
    select cart_id from {{ ref('int_profile_orders') }}
    where cart_id is not null

),

orders_by_profile as (

    select profile_id, ordered_at as order_at from {{ ref('int_profile_orders') }}
    union all
    select profile_id, event_at as order_at from {{ ref('int_profile_events') }}
    where event_name = 'Order Completed'

),

last_order as (

    select profile_id, max(order_at) as last_order_at
    from orders_by_profile
    group by profile_id

)

select
    carts.cart_id,
    owners.profile_id,
    carts.cart_started_at,
    carts.cart_updated_at,
    cart_items.cart_items,
    coalesce(cart_items.cart_value, 0) as cart_value,
    coalesce(cart_items.item_count, 0) as item_count,
    case
        when ordered_carts.cart_id is not null then 'ordered_this_cart'
        when last_order.last_order_at >= carts.cart_updated_at then 'ordered_after'
        when cart_items.cart_id is null then 'emptied'
    end as closed_reason,
    ordered_carts.cart_id is null
        and coalesce(last_order.last_order_at < carts.cart_updated_at, true)
        and cart_items.cart_id is not null as is_open
from carts
join owners on owners.cart_id = carts.cart_id and owners.rn = 1
left join cart_items on cart_items.cart_id = carts.cart_id
left join ordered_carts on ordered_carts.cart_id = carts.cart_id
left join last_order on last_order.profile_id = owners.profile_id
