{{ config(materialized='table') }}

{#- Every raw row that no stg_* model carries and that is not a collapsed duplicate, with why. -#}
{%- set sources = [
    ('events', 'base_raw_events'),
    ('orders', 'base_raw_orders'),
    ('crm_contacts', 'base_raw_crm_contacts'),
    ('consent', 'base_raw_consent'),
] %}

{% for source_table, model in sources %}
select
    '{{ source_table }}' as source_table,
    record_key,
    quarantine_reason as reason,
    raw_payload as payload,
    coalesce(landed_at, {{ headwater.as_of_timestamp() }}) as landed_at
from {{ ref(model) }}
where quarantine_reason is not null
{% if not loop.last %}union all{% endif %}
{% endfor %}
