{#-
  "Now" for every model: var('as_of') when set (tests and the demo pin it so that a rebuild on
  the same data gives the same answer), otherwise the warehouse clock, in UTC, without zone.
-#}
{% macro as_of_timestamp() -%}
  {%- set as_of = var('as_of', none) -%}
  {%- if as_of is not none and as_of | string | trim not in ('', 'null', 'None') -%}
    cast('{{ as_of | string | trim | replace("T", " ") | replace("Z", "") }}' as timestamp)
  {%- else -%}
    {{ return(adapter.dispatch('current_utc_timestamp', 'headwater')()) }}
  {%- endif -%}
{%- endmacro %}

{% macro default__current_utc_timestamp() -%}
  cast(current_timestamp as timestamp)
{%- endmacro %}

{% macro duckdb__current_utc_timestamp() -%}
  cast(timezone('UTC', current_timestamp) as timestamp)
{%- endmacro %}

{% macro snowflake__current_utc_timestamp() -%}
  cast(convert_timezone('UTC', current_timestamp()) as timestamp_ntz)
{%- endmacro %}


{#- raw.events' `timestamp` column: a keyword in both dialects, so it is always quoted, and a
    Snowflake loader creates it upper-case. -#}
{% macro event_timestamp_column() -%}
  {{ return(adapter.dispatch('event_timestamp_column', 'headwater')()) }}
{%- endmacro %}

{% macro default__event_timestamp_column() -%}
  "timestamp"
{%- endmacro %}

{% macro snowflake__event_timestamp_column() -%}
  "TIMESTAMP"
{%- endmacro %}
