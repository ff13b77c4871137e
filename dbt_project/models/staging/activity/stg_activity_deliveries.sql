{#-
  One row per delivery attempt from the activity feed (syncs and journey steps), copies dropped
  on the contract key (idempotency_key, attempt): a writer that crashed after appending a file
  and before recording it appends the same rows again.
-#}
select *
from {{ headwater.activity_relation('deliveries') }} as deliveries
where idempotency_key is not null and attempt is not null
qualify row_number() over (
    partition by idempotency_key, attempt order by attempted_at, run_id, status
) = 1
