{{ config(materialized='table') }}

{#- Every raw row that no stg_* model carries and that is not a collapsed duplicate, with why.
    The payload (the raw row as JSON text) is rendered here, after the filter, so that only
    quarantined rows pay for it. -#}
{%- set sources = {
    'events': ('base_raw_events', [
        ('message_id', 'raw_message_id'), ('type', 'raw_type'), ('event', 'raw_event'),
        ('user_id', 'raw_user_id'), ('anonymous_id', 'raw_anonymous_id'),
        ('previous_id', 'raw_previous_id'), ('traits', 'raw_traits'),
        ('properties', 'properties'), ('context', 'context'), ('timestamp', 'event_at'),
        ('received_at', 'received_at')]),
    'orders': ('base_raw_orders', [
        ('order_id', 'raw_order_id'), ('customer_email', 'raw_customer_email'),
        ('customer_phone', 'raw_customer_phone'), ('user_id', 'raw_user_id'),
        ('total', 'total'), ('currency', 'raw_currency'), ('status', 'raw_status'),
        ('created_at', 'ordered_at'), ('line_items', 'raw_line_items')]),
    'crm_contacts': ('base_raw_crm_contacts', [
        ('contact_id', 'raw_contact_id'), ('email', 'raw_email'), ('phone', 'raw_phone'),
        ('first_name', 'raw_first_name'), ('last_name', 'raw_last_name'),
        ('loyalty_tier', 'raw_loyalty_tier'), ('loyalty_points', 'loyalty_points'),
        ('updated_at', 'updated_at')]),
    'consent': ('base_raw_consent', [
        ('identifier_type', 'raw_identifier_type'),
        ('identifier_value', 'raw_identifier_value'), ('channel', 'raw_channel'),
        ('granted', 'granted'), ('recorded_at', 'recorded_at')]),
} %}

{% for source_table, (model, payload) in sources.items() %}
select
    '{{ source_table }}' as source_table,
    record_key,
    quarantine_reason as reason,
    {{ headwater.json_object_text(payload) }} as payload,
    coalesce(landed_at, {{ headwater.as_of_timestamp() }}) as landed_at
from (select * from {{ ref(model) }} where quarantine_reason is not null) as q
{% if not loop.last %}union all{% endif %}
{% endfor %}
