{#- Generic tests for normalized identifiers; each returns the offending rows. -#}

{% test is_e164(model, column_name) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} is not null
  and not {{ headwater.regex_full_match(column_name, '[+][1-9][0-9]{7,14}') }}
{% endtest %}


{% test is_normalized_email(model, column_name) %}
select {{ column_name }}
from {{ model }}
where {{ column_name }} is not null
  and ({{ column_name }} <> lower(trim({{ column_name }})) or {{ column_name }} not like '%_@_%')
{% endtest %}


{#-
  Nothing dropped silently: every row of a raw table is kept by its staging model, collapsed
  (counted in stg_collapsed_records) or quarantined. Applied to the staging model; returns a row
  when the three do not add up to the raw count.
-#}
{% test raw_rows_accounted_for(model, source_table, kept_model=none) %}
with raw_rows as (
    select count(*) as n from {{ source('raw', source_table) }}
),
kept as (
    select count(*) as n from {{ kept_model or model }}
),
collapsed as (
    select coalesce(sum(collapsed_rows), 0) as n
    from {{ ref('stg_collapsed_records') }} where source_table = '{{ source_table }}'
),
quarantined as (
    select count(*) as n
    from {{ ref('quarantined_records') }} where source_table = '{{ source_table }}'
)
select raw_rows.n as raw_rows, kept.n as kept, collapsed.n as collapsed, quarantined.n as quarantined
from raw_rows, kept, collapsed, quarantined
where raw_rows.n <> kept.n + collapsed.n + quarantined.n
{% endtest %}


{% test non_negative(model, column_name) %}
select {{ column_name }} from {{ model }} where {{ column_name }} < 0
{% endtest %}
