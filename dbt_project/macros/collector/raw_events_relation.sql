{#-
  raw.events as the models see it: the loaders' table plus, on DuckDB, what `headwater collect`
  landed as Parquet files in $HEADWATER_LANDING_DIR/events/. The collector cannot write into the
  warehouse file (dbt holds it during builds), so its messages join raw.events here, read-only;
  staging deduplicates message_ids across both, as for any at-least-once loader.
  `headwater` sets HEADWATER_LANDING_DIR (collector/config.py) and creates the folder with a
  zero-row schema file, so the glob never comes up empty.
-#}
{% macro raw_events_relation() %}
  {{ return(adapter.dispatch('raw_events_relation', 'headwater')()) }}
{% endmacro %}

{% macro default__raw_events_relation() %}{{ source('raw', 'events') }}{% endmacro %}

{% macro duckdb__raw_events_relation() %}
  {%- set landing = env_var('HEADWATER_LANDING_DIR', '') -%}
  {%- if landing -%}
  (
    select message_id, type, event, user_id, anonymous_id, previous_id, traits, properties,
           context, "timestamp", received_at
    from {{ source('raw', 'events') }}
    union all by name
    select cast(message_id as varchar) as message_id, cast(type as varchar) as type,
           cast(event as varchar) as event, cast(user_id as varchar) as user_id,
           cast(anonymous_id as varchar) as anonymous_id,
           cast(previous_id as varchar) as previous_id, cast(traits as json) as traits,
           cast(properties as json) as properties, cast(context as json) as context,
           cast("timestamp" as timestamp) as "timestamp",
           cast(received_at as timestamp) as received_at
    from read_parquet('{{ landing }}/events/*.parquet', union_by_name = true)
  )
  {%- else -%}
  {{ source('raw', 'events') }}
  {%- endif -%}
{% endmacro %}
