{#-
  Identity resolution settings, overridable with dbt vars (dbt_project.yml or --vars).

  identity_type_priority: which identifier anchors a record's star of edges, and which member
    wins a tie when picking a profile's canonical member (lower first).
  identity_over_shared: for an identifier of type T, the most distinct identifiers of type N it
    may be seen with (in the same message, order or CRM row) before it counts as over-shared and
    stops merging anything. The defaults follow Segment Unify's expectations: a device seen with
    two user_ids is a shared device; an email or phone seen with more than three user_ids or CRM
    contacts is a household/office/placeholder value. One or two people sharing an email are not
    over-shared: the per-profile user_id limit splits them instead (int_identity_clusters).
  identity_max_rounds: safety net for the iterative algorithms (never a silent cap: the build
    fails if a graph needs more rounds, instead of leaving chains half-merged as dbt_idr's
    30-iteration cap does).
-#}
{% macro identity_type_priority() -%}
  {{ return(var('identity_type_priority', {
      'user_id': 1,
      'crm_contact_id': 2,
      'email': 3,
      'phone': 4,
      'anonymous_id': 5,
  })) }}
{%- endmacro %}

{% macro identity_over_shared() -%}
  {{ return(var('identity_over_shared', {
      'anonymous_id': {'user_id': 1, 'email': 3, 'phone': 3, 'crm_contact_id': 3},
      'email': {'user_id': 3, 'crm_contact_id': 3},
      'phone': {'user_id': 3, 'crm_contact_id': 3},
      'crm_contact_id': {'user_id': 3},
  })) }}
{%- endmacro %}

{% macro identity_max_rounds() -%}
  {{ return(var('identity_max_rounds', 1000) | int) }}
{%- endmacro %}

{#- SQL expression: the priority number of an identifier_type column. -#}
{% macro identity_priority_sql(type_column) -%}
  case {{ type_column }}
  {%- for t, p in identity_type_priority().items() %}
    when '{{ t }}' then {{ p }}
  {%- endfor %}
    else 99 end
{%- endmacro %}

{#- The public profile id: a hash of the canonical member, so that it does not depend on
    row numbers or build order (md5 is the same function on DuckDB and Snowflake). -#}
{% macro identity_profile_id(type_expr, value_expr) -%}
  md5({{ type_expr }} || ':' || {{ value_expr }})
{%- endmacro %}

{#- Components of int_identity_components holding more than one user_id (a subquery). -#}
{% macro identity_conflicted_components_sql() -%}
select c.component_id
from {{ ref('int_identity_components') }} as c
inner join {{ ref('int_identity_identifiers') }} as i on c.identifier_id = i.identifier_id
where i.identifier_type = 'user_id'
group by c.component_id
having count(*) > 1
{%- endmacro %}

{#- Pre-hook of the identity models: DuckDB settings for big CTAS. The models never depend on
    row order, and preserve_insertion_order=false lets DuckDB write results without keeping
    the input order, which cuts memory and time on millions of rows. The identity tables are
    millions of short, nearly unique strings (ids, emails): FSST and dictionary-FSST gain
    little on them and analysing them for it was about half of each text table's build (1M:
    records 21.5 s -> 11.3 s); plain dictionary compression stays. Nothing elsewhere (a hook
    that renders empty is skipped). -#}
{% macro identity_session_settings() -%}
  {{ return(adapter.dispatch('identity_session_settings')()) }}
{%- endmacro %}

{% macro duckdb__identity_session_settings() -%}
  set preserve_insertion_order = false; set disabled_compression_methods = 'fsst,dict_fsst'
{%- endmacro %}

{% macro default__identity_session_settings() -%}{%- endmacro %}
