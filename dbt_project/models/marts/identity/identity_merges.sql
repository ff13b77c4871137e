{#- A view: the explanation is read a profile or an identifier at a time while debugging, and
    as a table it was the largest write of the identity build (five million edges with four
    text columns and a profile_id each: 12.6 s of 66 s at 1M customers), for rows nothing else
    reads. The view joins the same tables the same way, so it returns the same rows. -#}
{{ config(materialized='view') }}
{#-
  Why identifiers share a profile: one row per graph edge inside a profile, i.e. a pair of
  identifiers that arrived together in a record, with the earliest record that carried the
  pair. Follow a profile's rows from its canonical member to see which record joined what.
  Edges cut by the one-user_id-per-profile limit are not merges: they are in
  identity_rejections (limit_exceeded).
-#}
{#- Each table is joined twice, so it is referenced directly: a CTE read twice is
    materialized by DuckDB, a copy of millions of rows before the joins. -#}
select
    a.profile_id,
    ia.identifier_type as identifier_type_a,
    ia.identifier_value as identifier_value_a,
    ib.identifier_type as identifier_type_b,
    ib.identifier_value as identifier_value_b,
    e.source,
    e.record_key,
    e.first_seen_at,
    e.record_count
from {{ ref('int_identity_edges') }} as e
inner join {{ ref('int_identity_clusters') }} as a on e.identifier_id_a = a.identifier_id
inner join {{ ref('int_identity_clusters') }} as b on e.identifier_id_b = b.identifier_id
inner join {{ ref('int_identity_identifiers') }} as ia on e.identifier_id_a = ia.identifier_id
inner join {{ ref('int_identity_identifiers') }} as ib on e.identifier_id_b = ib.identifier_id
-- one profile per cluster: compare the integer cluster ids, not the hashes
where a.cluster_id = b.cluster_id
