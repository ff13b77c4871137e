{#-
  JSON access. Raw JSON columns are `json` on DuckDB and VARIANT on Snowflake, so every read of a
  path goes through these macros. `path` is a dotted path without the leading `$`, e.g. 'device.id'.
-#}

{% macro json_text(col, path) -%}
  {{ return(adapter.dispatch('json_text', 'headwater')(col, path)) }}
{%- endmacro %}

{% macro duckdb__json_text(col, path) -%}
  json_extract_string({{ col }}, '$.{{ path }}')
{%- endmacro %}

{% macro snowflake__json_text(col, path) -%}
  cast(get_path({{ col }}, '{{ path }}') as varchar)
{%- endmacro %}


{#- A JSON value (object, array or scalar) at `path`, still typed as JSON / VARIANT. -#}
{% macro json_query(col, path) -%}
  {{ return(adapter.dispatch('json_query', 'headwater')(col, path)) }}
{%- endmacro %}

{% macro duckdb__json_query(col, path) -%}
  json_extract({{ col }}, '$.{{ path }}')
{%- endmacro %}

{% macro snowflake__json_query(col, path) -%}
  get_path({{ col }}, '{{ path }}')
{%- endmacro %}


{#- A number at `path` as decimal(18, 2); anything that is not a number becomes null. -#}
{% macro json_number(col, path) -%}
  {{ return(adapter.dispatch('json_number', 'headwater')(col, path)) }}
{%- endmacro %}

{% macro duckdb__json_number(col, path) -%}
  try_cast({{ headwater.json_text(col, path) }} as decimal(18, 2))
{%- endmacro %}

{% macro snowflake__json_number(col, path) -%}
  try_cast({{ headwater.json_text(col, path) }} as number(18, 2))
{%- endmacro %}


{#- A JSON array at `path` (the value itself when path is none), or null when the value is
    missing or not an array. -#}
{% macro json_array(col, path=none) -%}
  {{ return(adapter.dispatch('json_array', 'headwater')(col, path)) }}
{%- endmacro %}

{% macro duckdb__json_array(col, path=none) -%}
  {%- set value = col if path is none else "json_extract(" ~ col ~ ", '$." ~ path ~ "')" -%}
  case when json_type({{ value }}) = 'ARRAY' then {{ value }} end
{%- endmacro %}

{% macro snowflake__json_array(col, path=none) -%}
  {%- set value = col if path is none else "get_path(" ~ col ~ ", '" ~ path ~ "')" -%}
  case when is_array({{ value }}) then {{ value }} end
{%- endmacro %}


{#- A JSON value rendered as JSON text (for fingerprints and quarantine payloads). -#}
{% macro json_to_text(expr) -%}
  {{ return(adapter.dispatch('json_to_text', 'headwater')(expr)) }}
{%- endmacro %}

{% macro duckdb__json_to_text(expr) -%}
  cast({{ expr }} as varchar)
{%- endmacro %}

{% macro snowflake__json_to_text(expr) -%}
  to_json({{ expr }})
{%- endmacro %}


{#-
  A JSON object text built from (key, sql expression) pairs; nulls are kept so that a payload
  shows which field was missing.
-#}
{% macro json_object_text(pairs) -%}
  {{ return(adapter.dispatch('json_object_text', 'headwater')(pairs)) }}
{%- endmacro %}

{% macro duckdb__json_object_text(pairs) -%}
  cast(json_object(
    {%- for key, expr in pairs %}
    '{{ key }}', {{ expr }}{{ "," if not loop.last }}
    {%- endfor %}
  ) as varchar)
{%- endmacro %}

{% macro snowflake__json_object_text(pairs) -%}
  to_json(object_construct_keep_null(
    {%- for key, expr in pairs %}
    '{{ key }}', {{ expr }}{{ "," if not loop.last }}
    {%- endfor %}
  ))
{%- endmacro %}
