{#-
  An email as identity resolution compares it: trimmed and lower-cased; null when blank or when
  it is not shaped like an address ('unknown', 'n/a', 'null'). Placeholder addresses such as
  test@test.com stay: the identity layer owns the blocklist.
-#}
{% macro normalize_email(expr) -%}
  case
    when {{ headwater.regex_full_match('lower(trim(' ~ expr ~ '))', '[^@ ]+@[^@ ]+[.][^@ .]+') }}
      then lower(trim({{ expr }}))
  end
{%- endmacro %}
