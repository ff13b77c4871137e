{#- Trimmed text with blanks as null. Used for ids; emails and phones have their own
    normalizers. Placeholder values stay: identity resolution owns the blocklist. -#}
{% macro trimmed(expr) -%}
  nullif(trim(cast({{ expr }} as varchar)), '')
{%- endmacro %}


{#-
  A stable fingerprint of a record, used to tell an identical re-delivery (dropped and counted)
  from a conflicting one (quarantined). Nulls are spelled out because Snowflake's concat_ws
  returns null as soon as one argument is null.
-#}
{% macro row_fingerprint(exprs) -%}
  md5(concat_ws('|'
    {%- for e in exprs %}, coalesce(cast({{ e }} as varchar), '<null>')
    {%- endfor %}))
{%- endmacro %}
