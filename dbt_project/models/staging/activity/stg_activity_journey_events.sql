{#-
  One row per journey decision from the activity feed, copies dropped on event_id (the contract
  key; a crashed writer may append the same decisions twice).
-#}
select *
from {{ headwater.activity_relation('journey_events') }} as journey_events
where event_id is not null
qualify row_number() over (partition by event_id order by recorded_at, occurred_at) = 1
