{#-
  The activity feed (docs/contracts.md, "Activity feed") as a relation with the contract's
  columns and types: `activity_relation('deliveries')` or `activity_relation('journey_events')`.

  DuckDB: the Parquet files under $HEADWATER_ACTIVITY_DIR/<kind>/ (`headwater` sets it and
  creates each folder with a zero-row schema file; plain dbt falls back to `activity/` next to
  the warehouse file). Sync runs and the fast-path worker append there while dbt holds the
  warehouse, so the feed is read-only files, never their state databases.
  Snowflake (and any other adapter): tables of the same names in schema headwater_state (load the
  Parquet files there, e.g. with COPY INTO from a stage).
  Either way a missing feed reads as zero rows, so a project without syncs or journeys builds.
  Rows are raw: copies of a key are possible (a writer that crashed after appending); the
  stg_activity_* models drop them.
-#}
{% macro activity_columns(kind) %}
  {%- set columns = {
      'deliveries': [
          ('source', 'varchar'), ('flow', 'varchar'), ('journey', 'varchar'),
          ('step', 'varchar'), ('channel', 'varchar'), ('destination', 'varchar'),
          ('run_id', 'varchar'), ('idempotency_key', 'varchar'), ('profile_id', 'varchar'),
          ('identifier_type', 'varchar'), ('identifier_value', 'varchar'),
          ('action', 'varchar'), ('status', 'varchar'), ('attempt', 'integer'),
          ('response_code', 'integer'), ('error', 'varchar'), ('external_id', 'varchar'),
          ('attempted_at', 'timestamp')],
      'journey_events': [
          ('event_id', 'varchar'), ('journey', 'varchar'), ('instance_id', 'varchar'),
          ('entry_key', 'varchar'), ('profile_id', 'varchar'),
          ('identifier_type', 'varchar'), ('identifier_value', 'varchar'),
          ('holdout', 'boolean'), ('event', 'varchar'), ('step', 'varchar'),
          ('reason', 'varchar'), ('trigger_message_id', 'varchar'),
          ('occurred_at', 'timestamp'), ('due_at', 'timestamp'), ('latency_ms', 'double'),
          ('recorded_at', 'timestamp')],
  } -%}
  {%- if kind not in columns -%}
    {{ exceptions.raise_compiler_error("activity_relation: unknown feed '" ~ kind ~ "'; known: deliveries, journey_events") }}
  {%- endif -%}
  {{ return(columns[kind]) }}
{% endmacro %}


{% macro activity_select(kind, relation) -%}
  (select
    {%- for name, type in headwater.activity_columns(kind) %}
    cast({{ name }} as {{ type }}) as {{ name }}{{ "," if not loop.last }}
    {%- endfor %}
  from {{ relation }})
{%- endmacro %}


{% macro empty_activity(kind) -%}
  (select
    {%- for name, type in headwater.activity_columns(kind) %}
    cast(null as {{ type }}) as {{ name }}{{ "," if not loop.last }}
    {%- endfor %}
  where 1 = 0)
{%- endmacro %}


{% macro activity_relation(kind) %}
  {{ return(adapter.dispatch('activity_relation', 'headwater')(kind)) }}
{% endmacro %}

{% macro default__activity_relation(kind) %}
  {%- set rel = source('headwater_state', kind) -%}
  {%- if execute and adapter.get_relation(rel.database, rel.schema, rel.identifier) is none -%}
    {{ return(headwater.empty_activity(kind)) }}
  {%- endif -%}
  {{ return(headwater.activity_select(kind, rel)) }}
{% endmacro %}

{% macro duckdb__activity_relation(kind) %}
  {%- set folder = env_var('HEADWATER_ACTIVITY_DIR', '') -%}
  {%- if not folder -%}
    {%- set parts = (target.path | string).rsplit('/', 1) -%}
    {%- set folder = (parts[0] if parts | length > 1 else '.') ~ '/activity' -%}
  {%- endif -%}
  {%- set glob = (folder ~ '/' ~ kind ~ '/*.parquet') | replace("'", "''") -%}
  {%- if execute -%}
    {%- set found = run_query("select count(*) from glob('" ~ glob ~ "')").columns[0].values()[0] -%}
    {%- if found == 0 -%}
      {{ return(headwater.empty_activity(kind)) }}
    {%- endif -%}
  {%- endif -%}
  {{ return(headwater.activity_select(kind, "read_parquet('" ~ glob ~ "', union_by_name = true)")) }}
{% endmacro %}
