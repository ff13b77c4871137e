{#- Date arithmetic and JSON arrays differ by dialect; profiles and scores go through these. -#}

{#- `ts` shifted by a whole number of days (negative goes back). -#}
{% macro add_days(ts, days) -%}
  {{ return(adapter.dispatch('add_days', 'headwater')(ts, days)) }}
{%- endmacro %}

{% macro default__add_days(ts, days) -%}
  ({{ ts }} + ({{ days }}) * interval '1 day')
{%- endmacro %}

{% macro duckdb__add_days(ts, days) -%}
  ({{ ts }} + to_days(cast({{ days }} as integer)))
{%- endmacro %}

{% macro snowflake__add_days(ts, days) -%}
  dateadd(day, {{ days }}, {{ ts }})
{%- endmacro %}


{% macro add_minutes(ts, minutes) -%}
  {{ return(adapter.dispatch('add_minutes', 'headwater')(ts, minutes)) }}
{%- endmacro %}

{% macro default__add_minutes(ts, minutes) -%}
  ({{ ts }} + ({{ minutes }}) * interval '1 minute')
{%- endmacro %}

{% macro duckdb__add_minutes(ts, minutes) -%}
  ({{ ts }} + to_minutes(cast({{ minutes }} as integer)))
{%- endmacro %}

{% macro snowflake__add_minutes(ts, minutes) -%}
  dateadd(minute, {{ minutes }}, {{ ts }})
{%- endmacro %}


{#- Days from `start_ts` to `end_ts` as a fractional number, to the microsecond. -#}
{% macro days_between(start_ts, end_ts) -%}
  {{ return(adapter.dispatch('days_between', 'headwater')(start_ts, end_ts)) }}
{%- endmacro %}

{% macro default__days_between(start_ts, end_ts) -%}
  (cast(date_diff('microsecond', {{ start_ts }}, {{ end_ts }}) as double) / 86400000000.0)
{%- endmacro %}

{% macro snowflake__days_between(start_ts, end_ts) -%}
  (cast(datediff(microsecond, {{ start_ts }}, {{ end_ts }}) as double) / 86400000000.0)
{%- endmacro %}


{#-
  The elements of a JSON array as rows: `from t, {{ json_array_rows('t.arr', 'x') }}` and then
  `{{ json_array_row_value('x') }}` is each element (JSON / VARIANT).
-#}
{% macro json_array_rows(array_expr, alias) -%}
  {{ return(adapter.dispatch('json_array_rows', 'headwater')(array_expr, alias)) }}
{%- endmacro %}

{% macro duckdb__json_array_rows(array_expr, alias) -%}
  unnest(json_extract({{ array_expr }}, '$[*]')) as {{ alias }}(element)
{%- endmacro %}

{% macro snowflake__json_array_rows(array_expr, alias) -%}
  lateral flatten(input => {{ array_expr }}) as {{ alias }}
{%- endmacro %}

{% macro json_array_row_value(alias) -%}
  {{ return(adapter.dispatch('json_array_row_value', 'headwater')(alias)) }}
{%- endmacro %}

{% macro duckdb__json_array_row_value(alias) -%}
  {{ alias }}.element
{%- endmacro %}

{% macro snowflake__json_array_row_value(alias) -%}
  {{ alias }}.value
{%- endmacro %}


{#-
  A JSON array of objects aggregated over a group, ordered: `pairs` is a list of
  (key, sql expression), `order_by` a sql expression.
-#}
{% macro json_agg_objects(pairs, order_by) -%}
  {{ return(adapter.dispatch('json_agg_objects', 'headwater')(pairs, order_by)) }}
{%- endmacro %}

{% macro duckdb__json_agg_objects(pairs, order_by) -%}
  to_json(list(json_object(
    {%- for key, expr in pairs %}
    '{{ key }}', {{ expr }}{{ "," if not loop.last }}
    {%- endfor %}
  ) order by {{ order_by }}))
{%- endmacro %}

{% macro snowflake__json_agg_objects(pairs, order_by) -%}
  array_agg(object_construct_keep_null(
    {%- for key, expr in pairs %}
    '{{ key }}', {{ expr }}{{ "," if not loop.last }}
    {%- endfor %}
  )) within group (order by {{ order_by }})
{%- endmacro %}
