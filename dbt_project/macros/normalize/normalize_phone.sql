{#-
  A phone number in E.164 ('+14155550101'), or null when it cannot be one.

  Accepted: a leading '+' (international), the '00' international prefix, NANP's '011', and
  national numbers of the record's country (country_expr, a SQL expression giving an ISO code,
  when the record carries one) or else of `default_country`: the trunk prefix ('0', or '1' in
  NANP) is dropped and the calling code added. Supported national plans: US/CA (1), GB (44),
  DE (49), FR (33), AU (61). Lengths are checked per calling code for those plans and to E.164's
  8-15 digits otherwise; anything else (too short, too long, letters only) becomes null.

  The expression reads the number's digits about twenty times. A model that normalizes millions
  of rows computes them once in a CTE (phone_digits(expr) as a column) and passes that column as
  digits_expr.
-#}

{#- The digits of a phone number's text, as normalize_phone reads them. -#}
{% macro phone_digits(expr) -%}
  {{ headwater.regex_replace_all('trim(cast(' ~ expr ~ ' as varchar))', '[^0-9]', '') }}
{%- endmacro %}

{% macro _phone_plans() -%}
  {{ return({
    'US': {'cc': '1', 'trunk': '1'},
    'CA': {'cc': '1', 'trunk': '1'},
    'GB': {'cc': '44', 'trunk': '0'},
    'DE': {'cc': '49', 'trunk': '0'},
    'FR': {'cc': '33', 'trunk': '0'},
    'AU': {'cc': '61', 'trunk': '0'},
  }) }}
{%- endmacro %}

{#- National digits -> international digits (without '+') for one country plan. -#}
{% macro _phone_national(digits, country) -%}
  {%- set plans = headwater._phone_plans() -%}
  {%- if country not in plans -%}
    {{ exceptions.raise_compiler_error(
        "normalize_phone: unsupported country '" ~ country ~ "'. Set var default_phone_country "
        ~ "to one of " ~ (plans.keys() | list | join(', ')) ~ ".") }}
  {%- endif -%}
  {%- set plan = plans[country] -%}
  {%- if plan.cc == '1' -%}
    case when length({{ digits }}) = 10 then '1' || {{ digits }}
         when length({{ digits }}) = 11 and {{ digits }} like '1%' then {{ digits }} end
  {%- else -%}
    case when {{ digits }} like '{{ plan.trunk }}%' then '{{ plan.cc }}' || substr({{ digits }}, 2)
         else '{{ plan.cc }}' || {{ digits }} end
  {%- endif -%}
{%- endmacro %}

{% macro normalize_phone(expr, default_country=none, country_expr=none, digits_expr=none) -%}
  {%- set country = (default_country or var('default_phone_country', 'US')) | string | upper -%}
  {%- set plans = headwater._phone_plans() -%}
  {%- set raw = 'trim(cast(' ~ expr ~ ' as varchar))' -%}
  {%- set digits = digits_expr or headwater.phone_digits(expr) -%}
  {%- set national -%}
    {%- if country_expr is none -%}
      {{ headwater._phone_national(digits, country) }}
    {%- else -%}
      case upper(trim({{ country_expr }}))
        {%- for code in plans if code != country %}
        when '{{ code }}' then {{ headwater._phone_national(digits, code) }}
        {%- endfor %}
        else {{ headwater._phone_national(digits, country) }}
      end
    {%- endif -%}
  {%- endset -%}
  {%- set intl -%}
    case
      when {{ raw }} like '+%' then {{ digits }}
      when {{ digits }} like '00%' then substr({{ digits }}, 3)
      {%- if plans[country].cc == '1' %}
      when {{ digits }} like '011%' then substr({{ digits }}, 4)
      {%- endif %}
      else {{ national }}
    end
  {%- endset -%}
  {#- One pattern per plan; the last alternatives are "any other calling code", written so that
      they cannot start with a plan's code (RE2 has no lookahead). -#}
  {%- set pattern = '1[2-9][0-9][0-9][2-9][0-9]{6}|44[1-9][0-9]{8,9}|49[1-9][0-9]{5,12}'
      ~ '|33[1-9][0-9]{8}|61[1-9][0-9]{8}'
      ~ '|[25789][0-9]{7,14}|3[0-24-9][0-9]{6,13}|4[0-35-8][0-9]{6,13}|6[02-9][0-9]{6,13}' -%}
  case when {{ headwater.regex_full_match('(' ~ intl ~ ')', '(' ~ pattern ~ ')') }}
       then '+' || ({{ intl }}) end
{%- endmacro %}
