{#- Generic tests for profiles and segments; each returns the offending rows. -#}

{#- Exactly the profiles of identity_map: none missing, none invented. -#}
{% test one_row_per_identity_profile(model, column_name) %}
with expected as (
    select distinct profile_id from {{ ref('identity_map') }}
),
actual as (
    select {{ column_name }} as profile_id from {{ model }}
)
select coalesce(e.profile_id, a.profile_id) as profile_id,
       case when a.profile_id is null then 'missing' else 'unexpected' end as problem
from expected e
full outer join actual a on a.profile_id = e.profile_id
where e.profile_id is null or a.profile_id is null
{% endtest %}


{% test between_zero_and_one(model, column_name) %}
select {{ column_name }} from {{ model }}
where {{ column_name }} < 0 or {{ column_name }} > 1
{% endtest %}


{#- Every row of `model` satisfies `expression` (a SQL predicate over its columns). -#}
{% test all_rows_satisfy(model, expression) %}
select * from {{ model }} where not ({{ expression }})
{% endtest %}


{#- No two rows share the values of `combination` (a list of columns). -#}
{% test unique_per_key(model, combination) %}
select {{ combination | join(', ') }}, count(*) as copies
from {{ model }}
group by {{ combination | join(', ') }}
having count(*) > 1
{% endtest %}
