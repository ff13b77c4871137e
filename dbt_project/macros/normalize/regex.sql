{#- Regular expressions differ by dialect: replace-all needs a flag on DuckDB, and Snowflake's
    full-match predicate is regexp_like. Patterns passed here avoid backslashes and (?:) groups so
    that one pattern works on both engines. -#}

{% macro regex_replace_all(expr, pattern, replacement) -%}
  {{ return(adapter.dispatch('regex_replace_all', 'headwater')(expr, pattern, replacement)) }}
{%- endmacro %}

{% macro default__regex_replace_all(expr, pattern, replacement) -%}
  regexp_replace({{ expr }}, '{{ pattern }}', '{{ replacement }}', 'g')
{%- endmacro %}

{% macro snowflake__regex_replace_all(expr, pattern, replacement) -%}
  regexp_replace({{ expr }}, '{{ pattern }}', '{{ replacement }}')
{%- endmacro %}


{% macro regex_full_match(expr, pattern) -%}
  {{ return(adapter.dispatch('regex_full_match', 'headwater')(expr, pattern)) }}
{%- endmacro %}

{% macro default__regex_full_match(expr, pattern) -%}
  regexp_full_match({{ expr }}, '{{ pattern }}')
{%- endmacro %}

{% macro snowflake__regex_full_match(expr, pattern) -%}
  regexp_like({{ expr }}, '{{ pattern }}')
{%- endmacro %}
