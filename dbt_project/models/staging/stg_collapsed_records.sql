{{ config(materialized='table') }}

{#- Raw rows folded into another row rather than kept or quarantined: identical re-deliveries
    (exact_duplicate) and older CRM versions (superseded_version), counted per record. -#}
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
    collapse_reason as reason,
    count(*) as collapsed_rows
from {{ ref(model) }}
where collapse_reason is not null
group by record_key, collapse_reason
{% if not loop.last %}union all{% endif %}
{% endfor %}
