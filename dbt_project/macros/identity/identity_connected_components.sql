{#-
  Connected components of an undirected graph, as SQL.

    identity_connected_components(nodes_sql, edges_sql)
      nodes_sql: a select with an integer column `node` (every vertex, isolated ones included)
      edges_sql: a select with integer columns `a`, `b` (each undirected edge once, a <> b)
    returns a select of (node, component_id), component_id = the smallest node of the component.

  DuckDB: a recursive CTE with USING KEY (DuckDB 1.3+). The CTE keeps one row per node, and
  each iteration only pushes the labels that just improved (the frontier) across the edges, so
  work per round shrinks as components settle. Rounds = the largest distance a label travels,
  so long chains take many (cheap) rounds; there is no cap. The recursion runs on one thread
  and its first rounds carry almost every node, so the first var identity_components_pre_rounds
  (default 3) rounds are plain grouped joins (parallel) that also mark which labels improved:
  the recursion starts from their labels with only those nodes on its frontier (1M customers:
  5.0M nodes / 5.3M edges, 3.9M nodes on the first frontier, 1.2M after the second round,
  20 s -> 10.5 s with two plain rounds; a third took the CPU from 19.1 to 16.2 s, a fourth
  gained nothing more). The keyed table holds only the nodes still changing (105k after three
  plain rounds at 1M, 1.7k more improve in the recursion); the others keep their plain label.
  Loading all 5M nodes into it and joining every edge with it each round was most of the
  recursion's time, on one thread (recursion 4.4 -> 2.2 s CPU at 1M).

  Snowflake (and any other adapter): no USING KEY, so rounds are issued from this macro with
  run_query into work tables, until no label changes. Each round is label propagation plus
  hooking and pointer jumping (FastSV, Zhang, Azad & Buluç 2020): a node takes the smallest
  label among its neighbours, the node its label points to takes it too (hooking the tree
  roots together), then every node jumps to its label's label. Hooking and jumping make a chain
  of n nodes converge in O(log n) rounds instead of n. The build fails (never truncates) if
  identity_max_rounds is reached. The work tables are dropped by identity_drop_work_tables()
  in the model's post-hook. var identity_components_strategy = 'rounds' selects this variant on
  DuckDB too (tests use it to check both algorithms agree).
-#}
{% macro identity_connected_components(nodes_sql, edges_sql) -%}
  {{ return(adapter.dispatch('identity_connected_components')(nodes_sql, edges_sql)) }}
{%- endmacro %}

{% macro duckdb__identity_connected_components(nodes_sql, edges_sql) -%}
  {%- if var('identity_components_strategy', 'recursive') == 'rounds' -%}
    {{ return(default__identity_connected_components(nodes_sql, edges_sql)) }}
  {%- endif -%}
{%- set directed -%}
select a as src, b as dst from ({{ edges_sql }}) as e1
union all
select b as src, a as dst from ({{ edges_sql }}) as e2
{%- endset -%}
{%- set pre_rounds = var('identity_components_pre_rounds', 3) | int -%}
with recursive round_0 as materialized (
    -- each node takes the smallest of its closed neighbourhood: a plain group by
    select
        n.node,
        least(n.node, coalesce(m.label, n.node)) as label,
        coalesce(m.label < n.node, false) as changed
    from ({{ nodes_sql }}) as n
    left join (
        select src, min(dst) as label from ({{ directed }}) as d group by src
    ) as m on n.node = m.src
),
{%- for k in range(1, pre_rounds) %}
round_{{ k }} as materialized (
    -- one more plain round, pushing only the labels that improved in the last one
    select
        l.node,
        least(l.label, coalesce(m.label, l.label)) as label,
        coalesce(m.label < l.label, false) as changed
    from round_{{ k - 1 }} as l
    left join (
        select e.dst, min(f.label) as label
        from round_{{ k - 1 }} as f
        inner join ({{ directed }}) as e on f.node = e.src
        where f.changed
        group by e.dst
    ) as m on l.node = m.dst
),
{%- endfor %}
components (node, component_id, changed) using key (node) as (
    -- only the nodes whose label improved in the last plain round: the keyed table (and the
    -- one-threaded recursion's work on it) stays as small as what still changes
    select node, label, changed from round_{{ pre_rounds - 1 }} where changed
    union
    -- only labels that improved last round travel on; the key keeps the best label per node.
    -- Candidates are grouped before the key is looked at (else all edges were joined with the
    -- keyed table every round), and a node not in the keyed table still has its plain label
    select m.dst, m.label, true
    from (
        select e.dst, min(c.component_id) as label
        from components as c
        inner join ({{ directed }}) as e on c.node = e.src
        where c.changed
        group by e.dst
    ) as m
    inner join round_{{ pre_rounds - 1 }} as l on m.dst = l.node
    left join recurring.components as r on m.dst = r.node
    where m.label < coalesce(r.component_id, l.label)
)
select l.node, coalesce(c.component_id, l.label) as component_id
from round_{{ pre_rounds - 1 }} as l
left join components as c on l.node = c.node
{%- endmacro %}

{% macro snowflake__identity_connected_components(nodes_sql, edges_sql) -%}
  {{ return(default__identity_connected_components(nodes_sql, edges_sql)) }}
{%- endmacro %}

{% macro default__identity_connected_components(nodes_sql, edges_sql) -%}
  {%- set edges = identity_work_relation('cc_edges') -%}
  {%- set labels = identity_work_relation('cc_labels') -%}
  {%- set next_labels = identity_work_relation('cc_next') -%}
  {%- if execute -%}
    {%- do run_query(
        'create or replace table ' ~ edges ~ ' as '
        ~ 'select a as src, b as dst from (' ~ edges_sql ~ ') as e1 '
        ~ 'union all select b as src, a as dst from (' ~ edges_sql ~ ') as e2') -%}
    {#- start from one round of plain propagation: each node's smallest closed neighbour -#}
    {%- do run_query(
        'create or replace table ' ~ labels ~ ' as '
        ~ 'select src as node, least(src, min(dst)) as label from ' ~ edges ~ ' group by src') -%}
    {%- set state = namespace(done=false, rounds=0) -%}
    {%- for round in range(identity_max_rounds()) if not state.done -%}
      {%- do run_query('create or replace table ' ~ next_labels ~ ' as ' ~ identity_fastsv_round(edges, labels)) -%}
      {%- set changed = run_query(
          'select count(*) from ' ~ next_labels ~ ' as n inner join ' ~ labels ~ ' as l '
          ~ 'on n.node = l.node where n.label <> l.label').columns[0].values()[0] -%}
      {%- do run_query('create or replace table ' ~ labels ~ ' as select node, label from ' ~ next_labels) -%}
      {%- set state.rounds = round + 1 -%}
      {%- if changed | int == 0 -%}{%- set state.done = true -%}{%- endif -%}
    {%- endfor -%}
    {%- if not state.done -%}
      {{ exceptions.raise_compiler_error(
          'identity_connected_components: labels still changing after ' ~ state.rounds
          ~ ' rounds. Raise var identity_max_rounds (now ' ~ identity_max_rounds() ~ ') and '
          ~ 'check identity_rejections for hubs that over-sharing detection missed.') }}
    {%- endif -%}
    {%- do log('identity_connected_components: converged in ' ~ state.rounds ~ ' rounds', info=false) -%}
  {%- endif -%}
select n.node, coalesce(l.label, n.node) as component_id
from ({{ nodes_sql }}) as n
left join {{ labels }} as l on n.node = l.node
{%- endmacro %}

{#- One FastSV round over work tables: propagate, hook the parent, jump. Plain SQL on purpose
    (no USING KEY, no QUALIFY) so that it runs on Snowflake and under fakesnow's sqlglot. -#}
{% macro identity_fastsv_round(edges, labels) -%}
with neighbour_min as (
    select e.src as node, min(l.label) as label
    from {{ edges }} as e
    inner join {{ labels }} as l on e.dst = l.node
    group by e.src
),
candidates as (
    select node, label from {{ labels }}
    union all
    select node, label from neighbour_min
    union all
    -- hooking: the node this one points to adopts the neighbours' label as well
    select l.label as node, m.label from neighbour_min as m
    inner join {{ labels }} as l on m.node = l.node
),
hooked as (
    select node, min(label) as label from candidates group by node
)
select h.node, coalesce(p.label, h.label) as label
from hooked as h
left join hooked as p on h.label = p.node
{%- endmacro %}

{#- A work table next to the model being built: <model>__<suffix>. -#}
{% macro identity_work_relation(suffix) -%}
  {{ return(api.Relation.create(
      database=this.database, schema=this.schema, identifier=this.identifier ~ '__' ~ suffix)) }}
{%- endmacro %}

{#- Post-hook SQL dropping one work table an iterative macro created (one statement per hook:
    Snowflake runs one statement per call). -#}
{% macro identity_drop_work_table(suffix) -%}
  drop table if exists {{ identity_work_relation(suffix) }}
{%- endmacro %}
