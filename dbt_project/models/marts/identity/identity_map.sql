{#-
  identifier (type, normalized value) -> profile_id: the contract every later part joins on.
  One row per usable identifier. resolution says how it got its profile:
  - graph: a member of the profile's identity graph cluster;
  - most_recent_user: an over-shared anonymous_id (a shared device) that merges nothing but is
    attributed to the profile of the user_id most recently seen on it.
  Blocklisted and other over-shared identifiers (emails, phones) have no profile: see
  identity_rejections.
-#}
with clusters as (

    select identifier_type, identifier_value, profile_id, first_seen_at, last_seen_at
    from {{ ref('int_identity_clusters') }}

),

shared_anonymous_ids as (

    select identifier_type, identifier_value, most_recent_user_id, first_seen_at, last_seen_at
    from {{ ref('int_identity_identifiers') }}
    where rejection_reason = 'over_shared' and identifier_type = 'anonymous_id'

),

graph_members as (

    select
        identifier_type,
        identifier_value,
        profile_id,
        'graph' as resolution,
        first_seen_at,
        last_seen_at
    from clusters

),

shared_devices as (

    select
        i.identifier_type,
        i.identifier_value,
        u.profile_id,
        'most_recent_user' as resolution,
        i.first_seen_at,
        i.last_seen_at
    from shared_anonymous_ids as i
    inner join clusters as u
        on u.identifier_type = 'user_id'
        and i.most_recent_user_id = u.identifier_value

)

select * from graph_members
union all
select * from shared_devices
