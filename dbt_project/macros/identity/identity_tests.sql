{#-
  Generic tests for identity outputs.

  one_profile_per_identifier: each (identifier_type, identifier_value) maps to exactly one
    profile (fails with the identifiers that map to several, or appear twice).
  max_identifiers_per_profile: no profile holds more than max_count identifiers of
    identifier_type (the per-type limit, e.g. one user_id per profile).
  profile_id_is_canonical_member_hash: every profile_id is the hash of one of its own graph
    members, so ids can be traced back (and stay stable while that member stays).
-#}
{% test one_profile_per_identifier(model, type_column='identifier_type',
                                   value_column='identifier_value',
                                   profile_column='profile_id') %}
select {{ type_column }}, {{ value_column }}, count(*) as n_rows,
    count(distinct {{ profile_column }}) as n_profiles
from {{ model }}
group by {{ type_column }}, {{ value_column }}
having count(*) > 1 or count(distinct {{ profile_column }}) > 1
    or max(case when {{ profile_column }} is null then 1 else 0 end) = 1
{% endtest %}

{% test max_identifiers_per_profile(model, identifier_type, max_count) %}
select profile_id, count(*) as n_identifiers
from {{ model }}
where identifier_type = '{{ identifier_type }}'
group by profile_id
having count(*) > {{ max_count }}
{% endtest %}

{% test profile_id_is_canonical_member_hash(model) %}
select m.profile_id
from {{ model }} as m
group by m.profile_id
having sum(case
    when {{ identity_profile_id('m.identifier_type', 'm.identifier_value') }} = m.profile_id
    then 1 else 0 end) <> 1
{% endtest %}

{#- No two rows share the given columns. -#}
{% test identity_unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as n_rows
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}

{#- Edges are stored once, smaller id first, never a self-loop. -#}
{% test identity_edge_is_ordered(model) %}
select * from {{ model }} where not (identifier_id_a < identifier_id_b)
{% endtest %}

{#- A component's label is its smallest member, and every edge stays inside one component:
    together these say the components are exactly the connected components. -#}
{% test identity_component_label_is_minimum(model, column_name) %}
select {{ column_name }}
from {{ model }}
group by {{ column_name }}
having min(identifier_id) <> {{ column_name }}
union all
select ca.{{ column_name }}
from {{ ref('int_identity_edges') }} as e
inner join {{ model }} as ca on e.identifier_id_a = ca.identifier_id
inner join {{ model }} as cb on e.identifier_id_b = cb.identifier_id
where ca.{{ column_name }} <> cb.{{ column_name }}
{% endtest %}
