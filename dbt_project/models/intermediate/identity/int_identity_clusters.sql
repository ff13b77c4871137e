{{ config(post_hook=[
    "{{ identity_drop_work_table('bfs_edges') }}",
    "{{ identity_drop_work_table('bfs_reached') }}",
]) }}
{#-
  Profiles before they get their public id: each usable identifier with its cluster.

  Per-type limit: a profile holds at most one user_id (Segment Unify's default limit), because a
  user_id is an account, and two accounts joined only through other identifiers (a shared
  phone, an email typed on a friend's checkout) are two people far more often than one. Pruning
  over-shared identifiers removes most such bridges; a component that still holds several
  user_ids is split: every identifier in it joins its nearest user_id (fewest hops, ties to the
  smallest identifier_id), so each part keeps exactly one user_id and stays connected. The
  edges cut this way are reported in identity_rejections as limit_exceeded.
  Other types have no limit: people do have several emails, phones, devices and CRM records.

  The canonical member of a cluster is its earliest-seen identifier (ties: type priority, then
  value), which is its smallest identifier_id (int_identity_identifiers numbers identifiers in
  that order), so it is an integer min, not a window over strings; profile_id hashes its type
  and value, so the id stays the same across rebuilds and when a later identifier joins.
  Integers only (and the profile_id): the types, values and times stay in
  int_identity_identifiers, and the marts join them by identifier_id. Writing five million
  rows of text again here cost more than the join it saved. For a component that is not split
  the cluster is the component, whose label is already its smallest member, so only split
  clusters need a min().
-#}
with user_ids_per_component as (

    -- the user_ids looked up among the user_ids only (a sixth of the identifiers), and the
    -- components read directly: a CTE of every member with a user_id flag was read twice,
    -- so DuckDB materialized all 5M rows of it
    select c.component_id, count(*) as n_user_ids
    from {{ ref('int_identity_components') }} as c
    inner join {{ ref('int_identity_identifiers') }} as u
        on c.identifier_id = u.identifier_id
        and u.identifier_type = 'user_id'
    group by c.component_id

),

{%- set seeds_sql -%}
select c.identifier_id as node
from {{ ref('int_identity_components') }} as c
inner join {{ ref('int_identity_identifiers') }} as i on c.identifier_id = i.identifier_id
where i.identifier_type = 'user_id'
    and c.component_id in ({{ identity_conflicted_components_sql() }})
{%- endset -%}
{%- set edges_sql -%}
select e.identifier_id_a as a, e.identifier_id_b as b
from {{ ref('int_identity_edges') }} as e
inner join {{ ref('int_identity_components') }} as c on e.identifier_id_a = c.identifier_id
where c.component_id in ({{ identity_conflicted_components_sql() }})
{%- endset %}

nearest_user_id as (

    {{ identity_nearest_seed(seeds_sql, edges_sql) | indent(4) }}

),

clustered as (

    select
        c.identifier_id,
        c.component_id,
        coalesce(u.n_user_ids, 0) as component_user_ids,
        -- a conflicted component splits by nearest user_id; any other is one cluster
        coalesce(n.seed, c.component_id) as cluster_id,
        n.distance as user_id_distance
    from {{ ref('int_identity_components') }} as c
    left join user_ids_per_component as u on c.component_id = u.component_id
    left join nearest_user_id as n on c.identifier_id = n.node

),

split_canonical as (

    -- identifier_id follows (first_seen_at, type priority, value): the smallest id of a
    -- cluster is its canonical member
    select cluster_id, min(identifier_id) as canonical_id
    from clustered
    where component_user_ids > 1
    group by cluster_id

),

canonical as (

    select
        k.cluster_id,
        k.canonical_id,
        {{ identity_profile_id('m.identifier_type', 'm.identifier_value') }} as profile_id
    from (
        -- an unsplit cluster is its component, labelled by its smallest member already
        select cluster_id, cluster_id as canonical_id
        from clustered
        where component_user_ids <= 1 and identifier_id = component_id
        union all
        select cluster_id, canonical_id from split_canonical
    ) as k
    inner join {{ ref('int_identity_identifiers') }} as m on k.canonical_id = m.identifier_id

)

select
    c.identifier_id,
    c.component_id,
    c.component_user_ids,
    c.cluster_id,
    c.user_id_distance,
    k.canonical_id,
    k.profile_id
from clustered as c
-- every cluster has its canonical row, so a left join returns what an inner one would; an
-- inner join let DuckDB reorder it with the dictionary lookup and hash the profile_id of
-- every member (5M md5) instead of every cluster's (1M): 1M customers 2.1 -> 1.6 s
left join canonical as k on c.cluster_id = k.cluster_id
