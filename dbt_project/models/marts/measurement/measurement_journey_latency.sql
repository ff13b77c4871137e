{#-
  The fast path's latency: for every `step_sent` journey event with latency_ms (wall time from
  the moment the step could go to the destination's answer), percentiles per journey step
  (scope `step`), per journey (`journey`, step null) and over everything (`all`).
-#}
{%- set measures %}
        count(*) as sends,
        percentile_cont(0.5) within group (order by latency_ms) as p50_ms,
        percentile_cont(0.95) within group (order by latency_ms) as p95_ms,
        percentile_cont(0.99) within group (order by latency_ms) as p99_ms,
        max(latency_ms) as max_ms,
        avg(latency_ms) as mean_ms
{%- endset %}
with sent as (

    select journey, step, latency_ms
    from {{ ref('stg_activity_journey_events') }}
    where event = 'step_sent' and latency_ms is not null
      and occurred_at <= {{ headwater.as_of_timestamp() }}

)

select 'step' as scope, journey, step, {{ measures }}
from sent group by journey, step
union all
select 'journey' as scope, journey, cast(null as varchar) as step, {{ measures }}
from sent group by journey
union all
select 'all' as scope, cast(null as varchar) as journey, cast(null as varchar) as step,
    {{ measures }}
from sent
having count(*) > 0
