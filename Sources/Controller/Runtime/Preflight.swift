import Actuators
import Foundation
import Logging
import NIOCore

/// One thing `switchman preflight` checked.
public struct PreflightCheck: Sendable, Codable, Hashable {
    /// `credentials`, `instance`, `sourceDestCheck`, `instanceStatus`, `elasticIP`,
    /// `routeTable`, `routeWrite`, `hostedZone`.
    public var check: String
    public var subject: String
    public var ok: Bool
    public var detail: String
}

/// Before the first start against an account: can this config's credentials reach every
/// table, instance and zone, and would IAM allow every route write the leader could make?
/// Reads, and EC2 writes with DryRun only: nothing changes in the account.
public enum Preflight {
    public static func run(config: SwitchmanConfig, environment: [String: String], logger: Logger,
                           deadline: Duration = .seconds(30)) async -> [PreflightCheck] {
        let aws = AWSClients(config: config, nodeID: "preflight", environment: environment, logger: logger)
        var checks: [PreflightCheck] = []
        do {
            let creds = try await aws.credentials.credentials(logger: logger)
            let source = await aws.credentials.sourceName ?? "?"
            checks.append(PreflightCheck(check: "credentials", subject: source, ok: true,
                                         detail: "access key \(creds.accessKeyID)\(creds.expiration.map { ", expires \($0)" } ?? "")"))
        } catch {
            checks.append(PreflightCheck(check: "credentials", subject: "chain", ok: false, detail: "\(error)"))
            return checks
        }
        let until = { NIODeadline.now() + deadline.timeAmount }

        // Instances first: a route write's dry run needs a real target.
        var known: [String: InstanceIdentity] = [:]
        let directory = EC2InstanceDirectory(defaultRegion: config.aws.region, logger: logger) { aws.ec2[$0] }
        let found = await directory.currentInstances(of: config.tunnels, known: [:], deadline: until())
        for tunnel in config.tunnels {
            let subject = "\(tunnel.name) (\(tunnel.instance.tagKey)=\(tunnel.instance.tagValue))"
            switch found[tunnel.name] {
            case .success(let identity?):
                known[tunnel.name] = identity
                checks.append(PreflightCheck(check: "instance", subject: subject, ok: true,
                                             detail: "\(identity.instanceId), \(identity.eniId), \(identity.privateIP)"))
            case .success(nil), nil:
                let interface = tunnel.instance.interfaceTag.map { "an interface tagged \($0.key)=\($0.value)" }
                    ?? "an interface at device index \(tunnel.instance.deviceIndex)"
                checks.append(PreflightCheck(check: "instance", subject: subject, ok: false,
                                             detail: "no running instance with this tag (and \(interface))"))
            case .failure(let error):
                checks.append(PreflightCheck(check: "instance", subject: subject, ok: false, detail: "\(error)"))
            }
        }

        // The leader's first write for each interface (aws.enforceSourceDestCheck).
        if config.aws.enforceSourceDestCheck {
            for tunnel in config.tunnels {
                guard let identity = known[tunnel.name], let ec2 = aws.ec2[tunnel.region ?? config.aws.region] else { continue }
                let subject = "\(tunnel.name) \(identity.eniId)"
                do {
                    switch try await ec2.dryRunDisableSourceDestCheck(networkInterfaceId: identity.eniId, deadline: until()) {
                    case .allowed:
                        checks.append(PreflightCheck(check: "sourceDestCheck", subject: subject, ok: true,
                                                     detail: "ModifyNetworkInterfaceAttribute allowed (DryRun)"))
                    case .denied(let why):
                        checks.append(PreflightCheck(check: "sourceDestCheck", subject: subject, ok: false,
                                                     detail: "ModifyNetworkInterfaceAttribute denied by IAM: \(why)"))
                    }
                } catch {
                    checks.append(PreflightCheck(check: "sourceDestCheck", subject: subject, ok: false,
                                                 detail: "ModifyNetworkInterfaceAttribute (DryRun): \(error)"))
                }
            }
        }

        // EC2's status checks of every instance found, and each tunnel's Elastic IP: it must
        // exist, and IAM must let the leader move it onto the tunnel's interface.
        var statusByRegion: [String: [(tunnel: String, instance: String)]] = [:]
        for tunnel in config.tunnels {
            guard let identity = known[tunnel.name] else { continue }
            statusByRegion[tunnel.region ?? config.aws.region, default: []].append((tunnel.name, identity.instanceId))
        }
        for (region, items) in statusByRegion.sorted(by: { $0.key < $1.key }) {
            guard let ec2 = aws.ec2[region] else { continue }
            do {
                let statuses = try await AWSRouteActuator(ec2: ec2, logger: logger).instanceStatuses(items.map(\.instance), deadline: until())
                for item in items {
                    let status = statuses[item.instance]
                    let events = status?.events.filter { !$0.isOver }.map(\.code) ?? []
                    checks.append(PreflightCheck(
                        check: "instanceStatus", subject: "\(item.tunnel) \(item.instance)", ok: status.map { !$0.impaired } ?? false,
                        detail: (status?.summary ?? "not listed by DescribeInstanceStatus")
                            + (events.isEmpty ? "" : "; scheduled: \(events.joined(separator: ", "))")))
                }
            } catch {
                for item in items {
                    checks.append(PreflightCheck(check: "instanceStatus", subject: "\(item.tunnel) \(item.instance)", ok: false, detail: "\(error)"))
                }
            }
        }
        for tunnel in config.tunnels {
            guard let allocation = tunnel.eip, let ec2 = aws.ec2[tunnel.region ?? config.aws.region] else { continue }
            let subject = "\(tunnel.name) \(allocation)"
            do {
                guard let address = try await ec2.describeAddresses(allocationIds: [allocation], deadline: until()).first else {
                    checks.append(PreflightCheck(check: "elasticIP", subject: subject, ok: false, detail: "no such Elastic IP in this account and Region"))
                    continue
                }
                guard let identity = known[tunnel.name] else {
                    checks.append(PreflightCheck(check: "elasticIP", subject: subject, ok: true, detail: "\(address.publicIp); no instance to dry-run the association with"))
                    continue
                }
                switch try await ec2.dryRunAssociateAddress(allocationId: allocation, networkInterfaceId: identity.eniId, deadline: until()) {
                case .allowed:
                    checks.append(PreflightCheck(check: "elasticIP", subject: subject, ok: true,
                                                 detail: "\(address.publicIp), on \(address.networkInterfaceId ?? "nothing"); AssociateAddress to \(identity.eniId) allowed (DryRun)"))
                case .denied(let why):
                    checks.append(PreflightCheck(check: "elasticIP", subject: subject, ok: false, detail: "AssociateAddress denied by IAM: \(why)"))
                }
            } catch {
                checks.append(PreflightCheck(check: "elasticIP", subject: subject, ok: false, detail: "\(error)"))
            }
        }

        let byRegion = Dictionary(grouping: config.routes) { $0.region ?? config.aws.region }
        for (region, routes) in byRegion.sorted(by: { $0.key < $1.key }) {
            guard let ec2 = aws.ec2[region] else { continue }
            let ids = Array(Set(routes.map(\.routeTable))).sorted()
            var tables: [String: EC2RouteTable] = [:]
            do {
                for t in try await ec2.describeRouteTables(filters: [EC2Filter("route-table-id", ids)], deadline: until()) { tables[t.id] = t }
            } catch {
                for id in ids { checks.append(PreflightCheck(check: "routeTable", subject: "\(id) (\(region))", ok: false, detail: "\(error)")) }
                continue
            }
            for id in ids {
                checks.append(PreflightCheck(check: "routeTable", subject: "\(id) (\(region))", ok: tables[id] != nil,
                                             detail: tables[id].map { "in \($0.vpcId ?? "?")" } ?? "not found"))
            }
            for route in routes {
                let subject = "\(route.routeTable) \(route.destination)"
                guard let table = tables[route.routeTable] else { continue }
                let existing = table.route(to: route.destination.description)
                // The write the leader would make first: to the first candidate with an instance.
                guard let target = route.candidates.lazy.compactMap({ known[$0] }).first else {
                    checks.append(PreflightCheck(check: "routeWrite", subject: subject, ok: false,
                                                 detail: "no candidate has an instance to point at"))
                    continue
                }
                let action = existing == nil ? "CreateRoute" : "ReplaceRoute"
                do {
                    let answer = try await ec2.dryRunRouteWrite(
                        create: existing == nil, routeTableId: route.routeTable, destination: route.destination.description,
                        target: .networkInterface(target.eniId), deadline: until())
                    switch answer {
                    case .allowed:
                        checks.append(PreflightCheck(check: "routeWrite", subject: subject, ok: true, detail: "\(action) allowed (DryRun)"))
                    case .denied(let why):
                        checks.append(PreflightCheck(check: "routeWrite", subject: subject, ok: false, detail: "\(action) denied by IAM: \(why)"))
                    }
                } catch {
                    checks.append(PreflightCheck(check: "routeWrite", subject: subject, ok: false, detail: "\(action) (DryRun): \(error)"))
                }
            }
        }

        for zone in Set(config.tunnels.compactMap { $0.dns?.zoneId }).sorted() {
            do {
                _ = try await aws.route53.listResourceRecordSetsPage(hostedZoneId: zone, maxItems: 1, deadline: until())
                checks.append(PreflightCheck(check: "hostedZone", subject: zone, ok: true, detail: "readable"))
            } catch {
                checks.append(PreflightCheck(check: "hostedZone", subject: zone, ok: false, detail: "\(error)"))
            }
        }
        return checks
    }
}
