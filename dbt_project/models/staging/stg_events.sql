{{ config(materialized='table') }}

{#- One row per usable Segment message; a table because every later layer reads it. -#}
select
    message_id,
    message_type,
    event_name,
    user_id,
    anonymous_id,
    previous_id,
    device_id,
    email,
    phone,
    first_name,
    last_name,
    cart_id,
    order_id,
    revenue,
    currency,
    products,
    properties,
    context,
    event_at,
    received_at
from {{ ref('base_raw_events') }}
where quarantine_reason is null and collapse_reason is null
