{#-
  Why identifiers share a profile: one row per graph edge inside a profile, i.e. a pair of
  identifiers that arrived together in a record, with the earliest record that carried the
  pair. Follow a profile's rows from its canonical member to see which record joined what.
  Edges cut by the one-user_id-per-profile limit are not merges: they are in
  identity_rejections (limit_exceeded).
-#}
with clusters as (

    select identifier_id, cluster_id, identifier_type, identifier_value, profile_id
    from {{ ref('int_identity_clusters') }}

)

select
    a.profile_id,
    a.identifier_type as identifier_type_a,
    a.identifier_value as identifier_value_a,
    b.identifier_type as identifier_type_b,
    b.identifier_value as identifier_value_b,
    e.source,
    e.record_key,
    e.first_seen_at,
    e.record_count
from {{ ref('int_identity_edges') }} as e
inner join clusters as a on e.identifier_id_a = a.identifier_id
inner join clusters as b on e.identifier_id_b = b.identifier_id
-- one profile per cluster: compare the integer cluster ids, not the hashes
where a.cluster_id = b.cluster_id
