{#-
  identifier (type, normalized value) -> profile_id: the contract every later part joins on.
  One row per usable identifier. resolution says how it got its profile:
  - graph: a member of the profile's identity graph cluster;
  - most_recent_user: an over-shared anonymous_id (a shared device) that merges nothing but is
    attributed to the profile of the user_id most recently seen on it.
  Blocklisted and other over-shared identifiers (emails, phones) have no profile: see
  identity_rejections.
-#}
{#- Tables are referenced directly, never through a CTE read twice: DuckDB materializes such a
    CTE, and here that means copying millions of rows of text before the join. -#}
with graph_members as (

    -- clusters hold integers only: the text comes from the dictionary, joined by id
    select
        i.identifier_type,
        i.identifier_value,
        c.profile_id,
        'graph' as resolution,
        i.first_seen_at,
        i.last_seen_at
    from {{ ref('int_identity_clusters') }} as c
    inner join {{ ref('int_identity_identifiers') }} as i on c.identifier_id = i.identifier_id

),

shared_devices as (

    -- a shared device takes the profile of its most recent user_id: the few thousand devices
    -- look their user_id up, rather than every user_id being joined to its profile first
    select
        i.identifier_type,
        i.identifier_value,
        c.profile_id,
        'most_recent_user' as resolution,
        i.first_seen_at,
        i.last_seen_at
    from {{ ref('int_identity_identifiers') }} as i
    inner join {{ ref('int_identity_identifiers') }} as u
        on u.identifier_type = 'user_id'
        and i.most_recent_user_id = u.identifier_value
    inner join {{ ref('int_identity_clusters') }} as c on u.identifier_id = c.identifier_id
    where i.rejection_reason = 'over_shared' and i.identifier_type = 'anonymous_id'

)

select * from graph_members
union all
select * from shared_devices
