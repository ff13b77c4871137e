{#-
  int_identity_records' record_id: a unique integer per distinct combination, for this build
  only (nothing orders by it).

    identity_source_row(): per source row, in the select of each source table (stg_events,
      stg_orders, stg_crm_contacts), a value the record id is derived from.
    identity_record_id(source_row_column, source_column): the aggregate giving each group of
      source rows (all from one source) its id.

  DuckDB: the smallest rowid of the group's rows, times three plus the source's number. Groups
  of one source never share a row, so the ids are unique without numbering anything:
  row_number() over () is a streaming window, which runs the whole pipeline after the group by
  (the write of 5.5M rows of text at 1M customers) on one thread; about 2 s of wall time at 1M.
  rowid needs the staging sources to be tables, which their configs make them.
  Elsewhere (no rowid): row_number() over ().
-#}
{% macro identity_source_row() -%}
  {{ return(adapter.dispatch('identity_source_row')()) }}
{%- endmacro %}

{% macro duckdb__identity_source_row() -%}
  rowid
{%- endmacro %}

{% macro default__identity_source_row() -%}
  cast(null as bigint)
{%- endmacro %}

{% macro identity_record_id(source_row_column, source_column) -%}
  {{ return(adapter.dispatch('identity_record_id')(source_row_column, source_column)) }}
{%- endmacro %}

{% macro duckdb__identity_record_id(source_row_column, source_column) -%}
  min({{ source_row_column }}) * 3
    + case {{ source_column }} when 'events' then 0 when 'orders' then 1 else 2 end
{%- endmacro %}

{% macro default__identity_record_id(source_row_column, source_column) -%}
  row_number() over ()
{%- endmacro %}
