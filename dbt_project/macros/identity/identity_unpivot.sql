{#-
  One row per (input row, slot), without reading the input once per slot: a union of one branch
  per expression would read a CTE several times, which DuckDB materializes (millions of rows
  here). Several columns unpivot in step: slot i takes the i-th expression of every column.

    identity_unpivot_columns(source, keep, columns)
      source: a relation or parenthesised subquery with an alias, e.g. '(select ...) as k'
      keep: columns passed through
      columns: a dict, output column name -> list of expressions (all lists the same length)
    identity_unpivot(source, keep, values, as_name): one column, `as_name`, of `values`
    both return a select of keep + the output columns (nulls included: callers filter them).

  DuckDB: unnest of lists (unnests in one select list advance together). Elsewhere: a cross
  join with a small table of slot numbers.
-#}
{% macro identity_unpivot(source, keep, values, as_name) -%}
  {{ return(identity_unpivot_columns(source, keep, {as_name: values})) }}
{%- endmacro %}

{% macro identity_unpivot_columns(source, keep, columns) -%}
  {{ return(adapter.dispatch('identity_unpivot_columns')(source, keep, columns)) }}
{%- endmacro %}

{% macro duckdb__identity_unpivot_columns(source, keep, columns) -%}
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
