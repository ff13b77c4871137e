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
