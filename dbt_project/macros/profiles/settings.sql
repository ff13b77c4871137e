{#-
  Defaults of the dbt vars that profiles, scores and segments read, in one place so that every
  model agrees. Override any of them with `--vars` or in dbt_project.yml.
-#}
{% macro profile_setting(name) -%}
  {%- set defaults = {
      'lifecycle_new_days': 30,
      'lifecycle_active_days': 90,
      'lifecycle_at_risk_days': 180,
      'excluded_order_statuses': ['cancelled', 'canceled', 'refunded', 'failed', 'voided'],
      'consent_without_record': {'email': true, 'sms': false, 'ads': false},
      'cart_abandoned_after_minutes': 30,
      'high_value_top_fraction': 0.1,
      'recent_purchase_days': 30,
      'propensity_window_days': 30,
      'churn_window_days': 90,
      'propensity_newton_iterations': 8,
      'propensity_l2': 1.0,
      'likely_to_purchase_top_fraction': 0.1,
      'churn_risk_high_top_fraction': 0.2,
  } -%}
  {%- if name not in defaults -%}
    {{ exceptions.raise_compiler_error("profile_setting: unknown setting '" ~ name ~ "'; known: " ~ (defaults.keys() | sort | join(', '))) }}
  {%- endif -%}
  {{ return(var(name, defaults[name])) }}
{%- endmacro %}


{#- A SQL list literal of strings, for `in (...)` filters built from a var. -#}
{% macro sql_string_list(values) -%}
  ({%- for v in values %}'{{ v | replace("'", "''") }}'{{ ", " if not loop.last }}{%- endfor %})
{%- endmacro %}
