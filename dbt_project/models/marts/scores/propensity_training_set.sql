{#-
  The labelled rows each score is fit (split = train) and evaluated out of time (split = eval)
  on, one row per score_name, split and profile_id:
    purchase_propensity_30d: every profile active before the cutoff; label 1 when it placed a
      counted order in the propensity_window_days (30) after the cutoff.
    churn_risk: active customers (a counted order before the cutoff and some activity in the
      churn_window_days (90) before it); label 1 when they went silent (no event and no order)
      for the churn_window_days after the cutoff.
  The benchmark fits scikit-learn on exactly these rows to check the SQL fit.
-#}
{%- set features = headwater.propensity_features() %}
{%- set churn_days = headwater.profile_setting('churn_window_days') | int %}
select
    'purchase_propensity_30d' as score_name,
    split,
    cutoff_at,
    profile_id
    {%- for f in features %},
    {{ f }}
    {%- endfor %},
    purchased_in_window as label
from {{ ref('int_propensity_features') }}
where cutoff_name in ('purchase_train', 'purchase_eval')

union all

select
    'churn_risk' as score_name,
    split,
    cutoff_at,
    profile_id
    {%- for f in features %},
    {{ f }}
    {%- endfor %},
    1 - active_in_window as label
from {{ ref('int_propensity_features') }}
where cutoff_name in ('churn_train', 'churn_eval')
    and has_ordered = 1
    and days_since_last_seen <= {{ churn_days }}
