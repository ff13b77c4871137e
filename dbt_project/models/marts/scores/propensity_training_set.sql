{#-
  The labelled rows each score is fit (split = train) and evaluated out of time (split = eval)
  on, one row per score_name, split and profile_id:
    purchase_propensity_30d: every profile active before the cutoff; label 1 when it placed an
      order in the window after the cutoff.
    churn_risk: customers only (at least one order before the cutoff); label 1 when they placed
      no order in the window after the cutoff.
  The benchmark fits scikit-learn on exactly these rows to check the SQL fit.
-#}
{%- set features = headwater.propensity_features() %}
{%- for score_name in ['purchase_propensity_30d', 'churn_risk'] %}
select
    '{{ score_name }}' as score_name,
    split,
    cutoff_at,
    profile_id
    {%- for f in features %},
    {{ f }}
    {%- endfor %},
    {% if score_name == 'churn_risk' %}1 - {% endif %}purchased_in_window as label
from {{ ref('int_propensity_features') }}
where split in ('train', 'eval')
{%- if score_name == 'churn_risk' %} and has_ordered = 1{% endif %}
{{ "union all" if not loop.last }}
{%- endfor %}
