-- Argo CD health check for circuit.resilience.dev/CircuitBreaker, in Argo CD's
-- resource-customization format: config/argocd/argocd-cm.yaml shows how to
-- add it to argocd-cm; test/manifests/argocd_test.go runs it with gopher-lua.
--   Closed   -> Healthy
--   HalfOpen -> Progressing (trial probes decide)
--   Open, or Ready False -> Degraded, with the reason in the message
--   no state yet, or a spec change not yet seen -> Progressing
local hs = {}
local status = obj.status
if status == nil or status.state == nil or status.state == "" then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to record the breaker's first state"
  return hs
end

local ready = nil
if status.conditions ~= nil then
  for _, c in ipairs(status.conditions) do
    if c.type == "Ready" then
      ready = c
    end
  end
end

local generation = obj.metadata.generation
if ready ~= nil and generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to act on generation " .. generation
  return hs
end

local lastReason = "unknown"
if status.lastProbe ~= nil and status.lastProbe.reason ~= nil then
  lastReason = status.lastProbe.reason
end

if ready ~= nil and ready.status == "False" then
  hs.status = "Degraded"
  hs.message = "Not ready (" .. (ready.reason or "Unknown") .. "): " .. (ready.message or "") .. "; circuit " .. status.state
  return hs
end

if status.state == "Open" then
  hs.status = "Degraded"
  local failures = status.consecutiveFailures or 0
  hs.message = "Circuit Open after " .. failures .. " consecutive failed probes (last: " .. lastReason .. ")"
  if status.nextRetryTime ~= nil then
    hs.message = hs.message .. "; next trial at " .. status.nextRetryTime
  end
  return hs
end

if status.state == "HalfOpen" then
  hs.status = "Progressing"
  hs.message = "Circuit HalfOpen: trial probes decide whether it closes (" .. (status.consecutiveSuccesses or 0) .. " succeeded so far)"
  return hs
end

if status.state == "Closed" then
  hs.status = "Healthy"
  hs.message = "Circuit Closed"
  if (status.consecutiveFailures or 0) > 0 then
    hs.message = hs.message .. "; " .. status.consecutiveFailures .. " consecutive failed probes (last: " .. lastReason .. ")"
  end
  return hs
end

hs.status = "Unknown"
hs.message = "Unknown circuit state " .. status.state
return hs
