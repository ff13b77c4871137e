{#-
  One row per (input row, listed expression), without reading the input once per expression:
  a union of one branch per expression would read a CTE several times, which DuckDB
  materializes (millions of rows here).

    identity_unpivot(source, keep, values, as_name)
      source: a relation or parenthesised subquery with an alias, e.g. '(select ...) as k'
      keep: columns passed through; values: expressions; as_name: the output column's name
    returns a select of keep + as_name (nulls included: callers filter them).

  DuckDB: unnest of a list. Elsewhere: a cross join with a small table of slot numbers.
-#}
{% macro identity_unpivot(source, keep, values, as_name) -%}
  {{ return(adapter.dispatch('identity_unpivot')(source, keep, values, as_name)) }}
{%- endmacro %}

{% macro duckdb__identity_unpivot(source, keep, values, as_name) -%}
select {{ keep | join(', ') }}, unnest([{{ values | join(', ') }}]) as {{ as_name }}
from {{ source }}
{%- endmacro %}

{% macro default__identity_unpivot(source, keep, values, as_name) -%}
select {{ keep | join(', ') }},
    case slots.slot
    {%- for v in values %}
        when {{ loop.index }} then {{ v }}
    {%- endfor %}
    end as {{ as_name }}
from {{ source }}
cross join (
    {%- for v in values %}
    select {{ loop.index }} as slot {% if not loop.last %}union all{% endif %}
    {%- endfor %}
) as slots
{%- endmacro %}

{#-
  Several columns unpivoted in step: one row per (input row, slot), slot i taking the i-th
  expression of every column.

    identity_unpivot_columns(source, keep, columns)
      columns: a dict, output column name -> list of expressions (all lists the same length)
-#}
{% macro identity_unpivot_columns(source, keep, columns) -%}
  {{ return(adapter.dispatch('identity_unpivot_columns')(source, keep, columns)) }}
{%- endmacro %}

{% macro duckdb__identity_unpivot_columns(source, keep, columns) -%}
{#- unnests in one select list advance together -#}
select {% for k in keep %}{{ k }}, {% endfor -%}
    {%- for name, values in columns.items() %}
    unnest([{{ values | join(', ') }}]) as {{ name }}{% if not loop.last %},{% endif %}
    {%- endfor %}
from {{ source }}
{%- endmacro %}

{% macro default__identity_unpivot_columns(source, keep, columns) -%}
{%- set n = (columns.values() | list)[0] | length -%}
select {% for k in keep %}{{ k }}, {% endfor -%}
    {%- for name, values in columns.items() %}
    case slots.slot
    {%- for v in values %}
        when {{ loop.index }} then {{ v }}
    {%- endfor %}
    end as {{ name }}{% if not loop.last %},{% endif %}
    {%- endfor %}
from {{ source }}
cross join (
    {%- for i in range(n) %}
    select {{ i + 1 }} as slot {% if not loop.last %}union all{% endif %}
    {%- endfor %}
) as slots
{%- endmacro %}
