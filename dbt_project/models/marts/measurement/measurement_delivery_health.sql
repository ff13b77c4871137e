{#-
  Delivery health per flow (sync or journey step), channel and destination, from every attempt
  in the feed up to as_of: attempts by status, the success rate, and the dead letters now.
  success_rate = delivered / (delivered + rejected + retry + dead) attempts: suppressed
  (capped) and dry-run attempts are neither successes nor failures.
  dead_letters: idempotency keys whose latest attempt is `dead` (not replayed since).
-#}
with attempts as (

    select *,
        row_number() over (
            partition by idempotency_key order by attempted_at desc, attempt desc
        ) as from_last
    from {{ ref('stg_activity_deliveries') }}
    where attempted_at <= {{ headwater.as_of_timestamp() }}

)

select
    source,
    flow,
    journey,
    step,
    channel,
    destination,
    count(*) as attempts,
    count(distinct idempotency_key) as records,
    sum(case when status = 'delivered' then 1 else 0 end) as delivered,
    sum(case when status = 'rejected' then 1 else 0 end) as rejected,
    sum(case when status = 'retry' then 1 else 0 end) as retried,
    sum(case when status = 'dead' then 1 else 0 end) as dead,
    sum(case when status = 'capped' then 1 else 0 end) as capped,
    sum(case when from_last = 1 and status = 'dead' then 1 else 0 end) as dead_letters,
    cast(sum(case when status = 'delivered' then 1 else 0 end) as double)
        / nullif(sum(case when status in ('delivered', 'rejected', 'retry', 'dead')
                          then 1 else 0 end), 0) as success_rate,
    min(attempted_at) as first_attempt_at,
    max(attempted_at) as last_attempt_at
from attempts
group by source, flow, journey, step, channel, destination
