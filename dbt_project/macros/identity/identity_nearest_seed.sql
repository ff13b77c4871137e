{#-
  Multi-source breadth-first search: every node reachable from a seed gets its nearest seed.

    identity_nearest_seed(seeds_sql, edges_sql)
      seeds_sql: a select with an integer column `node` (the seeds)
      edges_sql: a select with integer columns `a`, `b` (undirected edges, each once)
    returns a select of (node, seed, distance); ties in distance go to the smallest seed id.

  Used to split a component that holds more than one user_id: each identifier joins the user_id
  it is closest to, so no profile ever holds two user_ids and each part stays connected (with a
  consistent tie-break, a node's shortest path to its seed only crosses nodes of the same seed).
  Only conflicted components are searched, so the graph here is small.

  DuckDB: a recursive CTE with USING KEY; a node is settled the first round it is reached.
  Other adapters: one insert per BFS level from run_query, until a level adds nobody (the
  number of rounds is the largest distance; the build fails at identity_max_rounds instead of
  leaving nodes unassigned). var identity_components_strategy = 'rounds' selects it on DuckDB.
-#}
{% macro identity_nearest_seed(seeds_sql, edges_sql) -%}
  {{ return(adapter.dispatch('identity_nearest_seed')(seeds_sql, edges_sql)) }}
{%- endmacro %}

{% macro duckdb__identity_nearest_seed(seeds_sql, edges_sql) -%}
  {%- if var('identity_components_strategy', 'recursive') == 'rounds' -%}
    {{ return(default__identity_nearest_seed(seeds_sql, edges_sql)) }}
  {%- endif -%}
with recursive edges as materialized (
    select a as src, b as dst from ({{ edges_sql }}) as e1
    union all
    select b as src, a as dst from ({{ edges_sql }}) as e2
),
reached (node, seed, distance) using key (node) as (
    select node, node, 0 from ({{ seeds_sql }}) as s
    union
    -- the frontier is exactly last round's newly reached nodes, all at the same distance
    select e.dst, min(b.seed), min(b.distance) + 1
    from reached as b
    inner join edges as e on e.src = b.node
    left join recurring.reached as r on r.node = e.dst
    where r.node is null
    group by e.dst
)
select node, seed, distance from reached
{%- endmacro %}

{% macro snowflake__identity_nearest_seed(seeds_sql, edges_sql) -%}
  {{ return(default__identity_nearest_seed(seeds_sql, edges_sql)) }}
{%- endmacro %}

{% macro default__identity_nearest_seed(seeds_sql, edges_sql) -%}
  {%- set edges = identity_work_relation('bfs_edges') -%}
  {%- set reached = identity_work_relation('bfs_reached') -%}
  {%- if execute -%}
    {%- do run_query(
        'create or replace table ' ~ edges ~ ' as '
        ~ 'select a as src, b as dst from (' ~ edges_sql ~ ') as e1 '
        ~ 'union all select b as src, a as dst from (' ~ edges_sql ~ ') as e2') -%}
    {%- do run_query(
        'create or replace table ' ~ reached ~ ' as '
        ~ 'select node, node as seed, 0 as distance from (' ~ seeds_sql ~ ') as s') -%}
    {%- set state = namespace(done=false, rounds=0) -%}
    {%- for level in range(identity_max_rounds()) if not state.done -%}
      {%- do run_query(
          'insert into ' ~ reached ~ ' (node, seed, distance) '
          ~ 'select e.dst, min(b.seed), min(b.distance) + 1 '
          ~ 'from ' ~ reached ~ ' as b inner join ' ~ edges ~ ' as e on e.src = b.node '
          ~ 'left join ' ~ reached ~ ' as r on r.node = e.dst '
          ~ 'where b.distance = ' ~ level ~ ' and r.node is null group by e.dst') -%}
      {%- set added = run_query(
          'select count(*) from ' ~ reached ~ ' where distance = ' ~ (level + 1)
          ).columns[0].values()[0] -%}
      {%- set state.rounds = level + 1 -%}
      {%- if added | int == 0 -%}{%- set state.done = true -%}{%- endif -%}
    {%- endfor -%}
    {%- if not state.done -%}
      {{ exceptions.raise_compiler_error(
          'identity_nearest_seed: still reaching new nodes after ' ~ state.rounds
          ~ ' rounds. Raise var identity_max_rounds (now ' ~ identity_max_rounds() ~ ').') }}
    {%- endif -%}
  {%- endif -%}
select node, seed, distance from {{ reached }}
{%- endmacro %}
