{{ config(post_hook=[
    "{{ identity_drop_work_table('cc_edges') }}",
    "{{ identity_drop_work_table('cc_labels') }}",
    "{{ identity_drop_work_table('cc_next') }}",
]) }}
{#-
  Connected components of the identity graph: every usable identifier (rejection_reason null,
  isolated ones included) with its component, labelled by the component's smallest
  identifier_id. The algorithm is per adapter (macros/identity/identity_connected_components):
  a USING KEY recursive CTE on DuckDB, FastSV rounds (label propagation with hooking and
  pointer jumping) elsewhere. Transitive without any hop limit.
-#}
{%- set nodes_sql -%}
select identifier_id as node
from {{ ref('int_identity_identifiers') }}
where rejection_reason is null
{%- endset -%}
{%- set edges_sql -%}
select identifier_id_a as a, identifier_id_b as b
from {{ ref('int_identity_edges') }}
{%- endset -%}

select
    node as identifier_id,
    component_id
from (
{{ identity_connected_components(nodes_sql, edges_sql) }}
) as components
