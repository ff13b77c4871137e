{#-
  Defaults of the dbt vars that the measurement models read (attribution, lift), in one place.
  Override any of them with `--vars` or in dbt_project.yml; see models/marts/measurement/.
-#}
{% macro measurement_setting(name) -%}
  {%- set defaults = {
      'attribution_window_days': 3,
      'attribution_actions': ['send', 'add'],
      'attribution_channels': ['email', 'sms'],
  } -%}
  {%- if name not in defaults -%}
    {{ exceptions.raise_compiler_error("measurement_setting: unknown setting '" ~ name ~ "'; known: " ~ (defaults.keys() | sort | join(', '))) }}
  {%- endif -%}
  {{ return(var(name, defaults[name])) }}
{%- endmacro %}


{#- The two-sided 95% normal quantile, for every interval in the measurement models. -#}
{% macro z_95() -%}1.959963984540054{%- endmacro %}
