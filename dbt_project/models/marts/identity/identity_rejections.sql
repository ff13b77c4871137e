{#-
  Identifiers kept out of merging, and why (reason):
  - blocklist: a placeholder value from the identifier_blocklist seed; no profile.
  - over_shared: seen with too many distinct user_ids / CRM contacts / emails (vars
    identity_over_shared); merges nothing. A shared device (anonymous_id) still gets the profile
    of its most recent user (profile_id); other over-shared identifiers get none.
  - limit_exceeded: a usable identifier on an edge that was cut because following it would put
    two user_ids in one profile; it stays in the profile of its nearest user_id (profile_id).
  detail says which rule fired with the numbers, to make tuning the vars and the seed easy.
-#}
{#- int_identity_clusters is referenced directly, not through a CTE read four times, which
    DuckDB would materialize (millions of rows) before filtering to the few cut edges. -#}
with identifiers as (

    select
        identifier_type, identifier_value, rejection_reason, rejection_detail,
        most_recent_user_id
    from {{ ref('int_identity_identifiers') }}
    where rejection_reason is not null

),

excluded as (

    -- a shared device's profile is its most recent user_id's: only the rejected identifiers
    -- look their user_id up (left joins: other rejected identifiers keep a null profile_id)
    select
        i.identifier_type,
        i.identifier_value,
        i.rejection_reason as reason,
        i.rejection_detail as detail,
        case
            when i.rejection_reason = 'over_shared' and i.identifier_type = 'anonymous_id'
                then c.profile_id
        end as profile_id
    from identifiers as i
    left join {{ ref('int_identity_identifiers') }} as u
        on u.identifier_type = 'user_id'
        and i.most_recent_user_id = u.identifier_value
    left join {{ ref('int_identity_clusters') }} as c on u.identifier_id = c.identifier_id

),

cut as (

    -- edges whose ends landed in different clusters (one profile per cluster: integer compare).
    -- Both ends of an edge are in one component, and only a component holding several
    -- user_ids is split, so only edges from such components are looked at: the first join
    -- keeps the few edges of split components before the second one runs.
    select
        e.identifier_id_a,
        e.identifier_id_b,
        a.cluster_id as cluster_a,
        b.cluster_id as cluster_b
    from {{ ref('int_identity_edges') }} as e
    inner join {{ ref('int_identity_clusters') }} as a
        on e.identifier_id_a = a.identifier_id
        and a.component_user_ids > 1
    inner join {{ ref('int_identity_clusters') }} as b on e.identifier_id_b = b.identifier_id
    where a.cluster_id <> b.cluster_id

),

cut_edges as (

    select identifier_id_a as identifier_id, cluster_b as other_cluster_id from cut
    union all
    select identifier_id_b, cluster_a from cut

),

limited as (

    select
        i.identifier_type,
        i.identifier_value,
        'limit_exceeded' as reason,
        'linked to ' || cast(count(distinct x.other_cluster_id) as varchar)
            || ' other profile(s) with another user_id (component holds '
            || cast(max(c.component_user_ids) as varchar)
            || ' user_ids, limit 1); kept with its nearest user_id' as detail,
        c.profile_id
    from cut_edges as x
    inner join {{ ref('int_identity_clusters') }} as c on x.identifier_id = c.identifier_id
    inner join {{ ref('int_identity_identifiers') }} as i on x.identifier_id = i.identifier_id
    group by i.identifier_type, i.identifier_value, c.profile_id

)

select * from excluded
union all
select * from limited
