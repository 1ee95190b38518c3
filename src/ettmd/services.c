/* The services of ettmd, in the order they open (DESIGN.md, "How a service
 * plugs in"): the store first, then what the others need of it, the
 * switch controller before the services with flows. Their datapath
 * fragments compose in this order too (the devices' steering on the
 * uplink before NAT's). A new service is one line here, with where its
 * options are in struct config (docs/design.md, "Adding a service"). */
#include <stddef.h>

#include "agent.h"
#include "services/control/control.h"
#include "services/devices/devices.h"
#include "services/labels/labels.h"
#include "services/nat/nat.h"
#include "services/policy/policy.h"
#include "store/store.h"
#include "switch/switch.h"
#include "trust/attest.h"

#define OPTIONS(field) offsetof(struct config, field)

const struct svc_entry ettmd_services[] = {
    {&agent_service, SVC_NO_OPTIONS},   {&store_service, OPTIONS(store)},
    {&control_service, OPTIONS(sw)},    {&trust_service, OPTIONS(trust)},
    {&switch_service, OPTIONS(sw)},
    {&devices_service, OPTIONS(store)}, {&nat_service, OPTIONS(nat)},
    {&policy_service, SVC_NO_OPTIONS},  {&labels_service, SVC_NO_OPTIONS},
    {NULL},
};
