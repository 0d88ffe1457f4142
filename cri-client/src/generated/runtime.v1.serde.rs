impl serde::Serialize for AttachRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.AttachRequest", len)?;
        if true {
            struct_ser.serialize_field("containerId", &self.container_id)?;
        }
        if true {
            struct_ser.serialize_field("stdin", &self.stdin)?;
        }
        if true {
            struct_ser.serialize_field("tty", &self.tty)?;
        }
        if true {
            struct_ser.serialize_field("stdout", &self.stdout)?;
        }
        if true {
            struct_ser.serialize_field("stderr", &self.stderr)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for AttachRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "container_id",
            "containerId",
            "stdin",
            "tty",
            "stdout",
            "stderr",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            ContainerId,
            Stdin,
            Tty,
            Stdout,
            Stderr,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "containerId" | "container_id" => Ok(GeneratedField::ContainerId),
                            "stdin" => Ok(GeneratedField::Stdin),
                            "tty" => Ok(GeneratedField::Tty),
                            "stdout" => Ok(GeneratedField::Stdout),
                            "stderr" => Ok(GeneratedField::Stderr),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = AttachRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.AttachRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<AttachRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut container_id__ = None;
                let mut stdin__ = None;
                let mut tty__ = None;
                let mut stdout__ = None;
                let mut stderr__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::ContainerId => {
                            if container_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containerId"));
                            }
                            container_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Stdin => {
                            if stdin__.is_some() {
                                return Err(serde::de::Error::duplicate_field("stdin"));
                            }
                            stdin__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Tty => {
                            if tty__.is_some() {
                                return Err(serde::de::Error::duplicate_field("tty"));
                            }
                            tty__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Stdout => {
                            if stdout__.is_some() {
                                return Err(serde::de::Error::duplicate_field("stdout"));
                            }
                            stdout__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Stderr => {
                            if stderr__.is_some() {
                                return Err(serde::de::Error::duplicate_field("stderr"));
                            }
                            stderr__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(AttachRequest {
                    container_id: container_id__.unwrap_or_default(),
                    stdin: stdin__.unwrap_or_default(),
                    tty: tty__.unwrap_or_default(),
                    stdout: stdout__.unwrap_or_default(),
                    stderr: stderr__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.AttachRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for AttachResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.AttachResponse", len)?;
        if true {
            struct_ser.serialize_field("url", &self.url)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for AttachResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "url",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Url,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "url" => Ok(GeneratedField::Url),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = AttachResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.AttachResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<AttachResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut url__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Url => {
                            if url__.is_some() {
                                return Err(serde::de::Error::duplicate_field("url"));
                            }
                            url__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(AttachResponse {
                    url: url__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.AttachResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for AuthConfig {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.AuthConfig", len)?;
        if true {
            struct_ser.serialize_field("username", &self.username)?;
        }
        if true {
            struct_ser.serialize_field("password", &self.password)?;
        }
        if true {
            struct_ser.serialize_field("auth", &self.auth)?;
        }
        if true {
            struct_ser.serialize_field("serverAddress", &self.server_address)?;
        }
        if true {
            struct_ser.serialize_field("identityToken", &self.identity_token)?;
        }
        if true {
            struct_ser.serialize_field("registryToken", &self.registry_token)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for AuthConfig {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "username",
            "password",
            "auth",
            "server_address",
            "serverAddress",
            "identity_token",
            "identityToken",
            "registry_token",
            "registryToken",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Username,
            Password,
            Auth,
            ServerAddress,
            IdentityToken,
            RegistryToken,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "username" => Ok(GeneratedField::Username),
                            "password" => Ok(GeneratedField::Password),
                            "auth" => Ok(GeneratedField::Auth),
                            "serverAddress" | "server_address" => Ok(GeneratedField::ServerAddress),
                            "identityToken" | "identity_token" => Ok(GeneratedField::IdentityToken),
                            "registryToken" | "registry_token" => Ok(GeneratedField::RegistryToken),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = AuthConfig;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.AuthConfig")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<AuthConfig, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut username__ = None;
                let mut password__ = None;
                let mut auth__ = None;
                let mut server_address__ = None;
                let mut identity_token__ = None;
                let mut registry_token__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Username => {
                            if username__.is_some() {
                                return Err(serde::de::Error::duplicate_field("username"));
                            }
                            username__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Password => {
                            if password__.is_some() {
                                return Err(serde::de::Error::duplicate_field("password"));
                            }
                            password__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Auth => {
                            if auth__.is_some() {
                                return Err(serde::de::Error::duplicate_field("auth"));
                            }
                            auth__ = Some(map_.next_value()?);
                        }
                        GeneratedField::ServerAddress => {
                            if server_address__.is_some() {
                                return Err(serde::de::Error::duplicate_field("serverAddress"));
                            }
                            server_address__ = Some(map_.next_value()?);
                        }
                        GeneratedField::IdentityToken => {
                            if identity_token__.is_some() {
                                return Err(serde::de::Error::duplicate_field("identityToken"));
                            }
                            identity_token__ = Some(map_.next_value()?);
                        }
                        GeneratedField::RegistryToken => {
                            if registry_token__.is_some() {
                                return Err(serde::de::Error::duplicate_field("registryToken"));
                            }
                            registry_token__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(AuthConfig {
                    username: username__.unwrap_or_default(),
                    password: password__.unwrap_or_default(),
                    auth: auth__.unwrap_or_default(),
                    server_address: server_address__.unwrap_or_default(),
                    identity_token: identity_token__.unwrap_or_default(),
                    registry_token: registry_token__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.AuthConfig", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for CdiDevice {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.CDIDevice", len)?;
        if true {
            struct_ser.serialize_field("name", &self.name)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for CdiDevice {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "name",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Name,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "name" => Ok(GeneratedField::Name),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = CdiDevice;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.CDIDevice")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<CdiDevice, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut name__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(CdiDevice {
                    name: name__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.CDIDevice", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for Capability {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.Capability", len)?;
        if true {
            struct_ser.serialize_field("addCapabilities", &self.add_capabilities)?;
        }
        if true {
            struct_ser.serialize_field("dropCapabilities", &self.drop_capabilities)?;
        }
        if true {
            struct_ser.serialize_field("addAmbientCapabilities", &self.add_ambient_capabilities)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for Capability {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "add_capabilities",
            "addCapabilities",
            "drop_capabilities",
            "dropCapabilities",
            "add_ambient_capabilities",
            "addAmbientCapabilities",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            AddCapabilities,
            DropCapabilities,
            AddAmbientCapabilities,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "addCapabilities" | "add_capabilities" => Ok(GeneratedField::AddCapabilities),
                            "dropCapabilities" | "drop_capabilities" => Ok(GeneratedField::DropCapabilities),
                            "addAmbientCapabilities" | "add_ambient_capabilities" => Ok(GeneratedField::AddAmbientCapabilities),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = Capability;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.Capability")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<Capability, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut add_capabilities__ = None;
                let mut drop_capabilities__ = None;
                let mut add_ambient_capabilities__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::AddCapabilities => {
                            if add_capabilities__.is_some() {
                                return Err(serde::de::Error::duplicate_field("addCapabilities"));
                            }
                            add_capabilities__ = Some(map_.next_value()?);
                        }
                        GeneratedField::DropCapabilities => {
                            if drop_capabilities__.is_some() {
                                return Err(serde::de::Error::duplicate_field("dropCapabilities"));
                            }
                            drop_capabilities__ = Some(map_.next_value()?);
                        }
                        GeneratedField::AddAmbientCapabilities => {
                            if add_ambient_capabilities__.is_some() {
                                return Err(serde::de::Error::duplicate_field("addAmbientCapabilities"));
                            }
                            add_ambient_capabilities__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(Capability {
                    add_capabilities: add_capabilities__.unwrap_or_default(),
                    drop_capabilities: drop_capabilities__.unwrap_or_default(),
                    add_ambient_capabilities: add_ambient_capabilities__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.Capability", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for CgroupDriver {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        let variant = match self {
            Self::Systemd => "SYSTEMD",
            Self::Cgroupfs => "CGROUPFS",
        };
        serializer.serialize_str(variant)
    }
}
impl<'de> serde::Deserialize<'de> for CgroupDriver {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "SYSTEMD",
            "CGROUPFS",
        ];

        struct GeneratedVisitor;

        impl serde::de::Visitor<'_> for GeneratedVisitor {
            type Value = CgroupDriver;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(formatter, "expected one of: {:?}", &FIELDS)
            }

            fn visit_i64<E>(self, v: i64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Signed(v), &self)
                    })
            }

            fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Unsigned(v), &self)
                    })
            }

            fn visit_str<E>(self, value: &str) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                match value {
                    "SYSTEMD" => Ok(CgroupDriver::Systemd),
                    "CGROUPFS" => Ok(CgroupDriver::Cgroupfs),
                    _ => Err(serde::de::Error::unknown_variant(value, FIELDS)),
                }
            }
        }
        deserializer.deserialize_any(GeneratedVisitor)
    }
}
impl serde::Serialize for CheckpointContainerRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.CheckpointContainerRequest", len)?;
        if true {
            struct_ser.serialize_field("containerId", &self.container_id)?;
        }
        if true {
            struct_ser.serialize_field("location", &self.location)?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("timeout", ToString::to_string(&self.timeout).as_str())?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for CheckpointContainerRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "container_id",
            "containerId",
            "location",
            "timeout",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            ContainerId,
            Location,
            Timeout,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "containerId" | "container_id" => Ok(GeneratedField::ContainerId),
                            "location" => Ok(GeneratedField::Location),
                            "timeout" => Ok(GeneratedField::Timeout),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = CheckpointContainerRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.CheckpointContainerRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<CheckpointContainerRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut container_id__ = None;
                let mut location__ = None;
                let mut timeout__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::ContainerId => {
                            if container_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containerId"));
                            }
                            container_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Location => {
                            if location__.is_some() {
                                return Err(serde::de::Error::duplicate_field("location"));
                            }
                            location__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Timeout => {
                            if timeout__.is_some() {
                                return Err(serde::de::Error::duplicate_field("timeout"));
                            }
                            timeout__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(CheckpointContainerRequest {
                    container_id: container_id__.unwrap_or_default(),
                    location: location__.unwrap_or_default(),
                    timeout: timeout__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.CheckpointContainerRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for CheckpointContainerResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let len = 0;
        let struct_ser = serializer.serialize_struct("runtime.v1.CheckpointContainerResponse", len)?;
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for CheckpointContainerResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                            Ok(GeneratedField::__SkipField__)
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = CheckpointContainerResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.CheckpointContainerResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<CheckpointContainerResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                while map_.next_key::<GeneratedField>()?.is_some() {
                    let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(CheckpointContainerResponse {
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.CheckpointContainerResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for Container {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.Container", len)?;
        if true {
            struct_ser.serialize_field("id", &self.id)?;
        }
        if true {
            struct_ser.serialize_field("podSandboxId", &self.pod_sandbox_id)?;
        }
        if let Some(v) = self.metadata.as_ref() {
            struct_ser.serialize_field("metadata", v)?;
        }
        if let Some(v) = self.image.as_ref() {
            struct_ser.serialize_field("image", v)?;
        }
        if true {
            struct_ser.serialize_field("imageRef", &self.image_ref)?;
        }
        if true {
            let v = ContainerState::try_from(self.state)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.state)))?;
            struct_ser.serialize_field("state", &v)?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("createdAt", ToString::to_string(&self.created_at).as_str())?;
        }
        if true {
            struct_ser.serialize_field("labels", &self.labels)?;
        }
        if true {
            struct_ser.serialize_field("annotations", &self.annotations)?;
        }
        if true {
            struct_ser.serialize_field("imageId", &self.image_id)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for Container {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "id",
            "pod_sandbox_id",
            "podSandboxId",
            "metadata",
            "image",
            "image_ref",
            "imageRef",
            "state",
            "created_at",
            "createdAt",
            "labels",
            "annotations",
            "image_id",
            "imageId",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Id,
            PodSandboxId,
            Metadata,
            Image,
            ImageRef,
            State,
            CreatedAt,
            Labels,
            Annotations,
            ImageId,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "id" => Ok(GeneratedField::Id),
                            "podSandboxId" | "pod_sandbox_id" => Ok(GeneratedField::PodSandboxId),
                            "metadata" => Ok(GeneratedField::Metadata),
                            "image" => Ok(GeneratedField::Image),
                            "imageRef" | "image_ref" => Ok(GeneratedField::ImageRef),
                            "state" => Ok(GeneratedField::State),
                            "createdAt" | "created_at" => Ok(GeneratedField::CreatedAt),
                            "labels" => Ok(GeneratedField::Labels),
                            "annotations" => Ok(GeneratedField::Annotations),
                            "imageId" | "image_id" => Ok(GeneratedField::ImageId),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = Container;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.Container")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<Container, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut id__ = None;
                let mut pod_sandbox_id__ = None;
                let mut metadata__ = None;
                let mut image__ = None;
                let mut image_ref__ = None;
                let mut state__ = None;
                let mut created_at__ = None;
                let mut labels__ = None;
                let mut annotations__ = None;
                let mut image_id__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Id => {
                            if id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("id"));
                            }
                            id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::PodSandboxId => {
                            if pod_sandbox_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("podSandboxId"));
                            }
                            pod_sandbox_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Metadata => {
                            if metadata__.is_some() {
                                return Err(serde::de::Error::duplicate_field("metadata"));
                            }
                            metadata__ = map_.next_value()?;
                        }
                        GeneratedField::Image => {
                            if image__.is_some() {
                                return Err(serde::de::Error::duplicate_field("image"));
                            }
                            image__ = map_.next_value()?;
                        }
                        GeneratedField::ImageRef => {
                            if image_ref__.is_some() {
                                return Err(serde::de::Error::duplicate_field("imageRef"));
                            }
                            image_ref__ = Some(map_.next_value()?);
                        }
                        GeneratedField::State => {
                            if state__.is_some() {
                                return Err(serde::de::Error::duplicate_field("state"));
                            }
                            state__ = Some(map_.next_value::<ContainerState>()? as i32);
                        }
                        GeneratedField::CreatedAt => {
                            if created_at__.is_some() {
                                return Err(serde::de::Error::duplicate_field("createdAt"));
                            }
                            created_at__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::Labels => {
                            if labels__.is_some() {
                                return Err(serde::de::Error::duplicate_field("labels"));
                            }
                            labels__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::Annotations => {
                            if annotations__.is_some() {
                                return Err(serde::de::Error::duplicate_field("annotations"));
                            }
                            annotations__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::ImageId => {
                            if image_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("imageId"));
                            }
                            image_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(Container {
                    id: id__.unwrap_or_default(),
                    pod_sandbox_id: pod_sandbox_id__.unwrap_or_default(),
                    metadata: metadata__,
                    image: image__,
                    image_ref: image_ref__.unwrap_or_default(),
                    state: state__.unwrap_or_default(),
                    created_at: created_at__.unwrap_or_default(),
                    labels: labels__.unwrap_or_default(),
                    annotations: annotations__.unwrap_or_default(),
                    image_id: image_id__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.Container", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ContainerAttributes {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ContainerAttributes", len)?;
        if true {
            struct_ser.serialize_field("id", &self.id)?;
        }
        if let Some(v) = self.metadata.as_ref() {
            struct_ser.serialize_field("metadata", v)?;
        }
        if true {
            struct_ser.serialize_field("labels", &self.labels)?;
        }
        if true {
            struct_ser.serialize_field("annotations", &self.annotations)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ContainerAttributes {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "id",
            "metadata",
            "labels",
            "annotations",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Id,
            Metadata,
            Labels,
            Annotations,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "id" => Ok(GeneratedField::Id),
                            "metadata" => Ok(GeneratedField::Metadata),
                            "labels" => Ok(GeneratedField::Labels),
                            "annotations" => Ok(GeneratedField::Annotations),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ContainerAttributes;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ContainerAttributes")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ContainerAttributes, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut id__ = None;
                let mut metadata__ = None;
                let mut labels__ = None;
                let mut annotations__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Id => {
                            if id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("id"));
                            }
                            id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Metadata => {
                            if metadata__.is_some() {
                                return Err(serde::de::Error::duplicate_field("metadata"));
                            }
                            metadata__ = map_.next_value()?;
                        }
                        GeneratedField::Labels => {
                            if labels__.is_some() {
                                return Err(serde::de::Error::duplicate_field("labels"));
                            }
                            labels__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::Annotations => {
                            if annotations__.is_some() {
                                return Err(serde::de::Error::duplicate_field("annotations"));
                            }
                            annotations__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ContainerAttributes {
                    id: id__.unwrap_or_default(),
                    metadata: metadata__,
                    labels: labels__.unwrap_or_default(),
                    annotations: annotations__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ContainerAttributes", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ContainerConfig {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ContainerConfig", len)?;
        if let Some(v) = self.metadata.as_ref() {
            struct_ser.serialize_field("metadata", v)?;
        }
        if let Some(v) = self.image.as_ref() {
            struct_ser.serialize_field("image", v)?;
        }
        if true {
            struct_ser.serialize_field("command", &self.command)?;
        }
        if true {
            struct_ser.serialize_field("args", &self.args)?;
        }
        if true {
            struct_ser.serialize_field("workingDir", &self.working_dir)?;
        }
        if true {
            struct_ser.serialize_field("envs", &self.envs)?;
        }
        if true {
            struct_ser.serialize_field("mounts", &self.mounts)?;
        }
        if true {
            struct_ser.serialize_field("devices", &self.devices)?;
        }
        if true {
            struct_ser.serialize_field("labels", &self.labels)?;
        }
        if true {
            struct_ser.serialize_field("annotations", &self.annotations)?;
        }
        if true {
            struct_ser.serialize_field("logPath", &self.log_path)?;
        }
        if true {
            struct_ser.serialize_field("stdin", &self.stdin)?;
        }
        if true {
            struct_ser.serialize_field("stdinOnce", &self.stdin_once)?;
        }
        if true {
            struct_ser.serialize_field("tty", &self.tty)?;
        }
        if let Some(v) = self.linux.as_ref() {
            struct_ser.serialize_field("linux", v)?;
        }
        if let Some(v) = self.windows.as_ref() {
            struct_ser.serialize_field("windows", v)?;
        }
        if true {
            struct_ser.serialize_field("CDIDevices", &self.cdi_devices)?;
        }
        if true {
            let v = Signal::try_from(self.stop_signal)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.stop_signal)))?;
            struct_ser.serialize_field("stopSignal", &v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ContainerConfig {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "metadata",
            "image",
            "command",
            "args",
            "working_dir",
            "workingDir",
            "envs",
            "mounts",
            "devices",
            "labels",
            "annotations",
            "log_path",
            "logPath",
            "stdin",
            "stdin_once",
            "stdinOnce",
            "tty",
            "linux",
            "windows",
            "CDI_devices",
            "CDIDevices",
            "stop_signal",
            "stopSignal",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Metadata,
            Image,
            Command,
            Args,
            WorkingDir,
            Envs,
            Mounts,
            Devices,
            Labels,
            Annotations,
            LogPath,
            Stdin,
            StdinOnce,
            Tty,
            Linux,
            Windows,
            CdiDevices,
            StopSignal,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "metadata" => Ok(GeneratedField::Metadata),
                            "image" => Ok(GeneratedField::Image),
                            "command" => Ok(GeneratedField::Command),
                            "args" => Ok(GeneratedField::Args),
                            "workingDir" | "working_dir" => Ok(GeneratedField::WorkingDir),
                            "envs" => Ok(GeneratedField::Envs),
                            "mounts" => Ok(GeneratedField::Mounts),
                            "devices" => Ok(GeneratedField::Devices),
                            "labels" => Ok(GeneratedField::Labels),
                            "annotations" => Ok(GeneratedField::Annotations),
                            "logPath" | "log_path" => Ok(GeneratedField::LogPath),
                            "stdin" => Ok(GeneratedField::Stdin),
                            "stdinOnce" | "stdin_once" => Ok(GeneratedField::StdinOnce),
                            "tty" => Ok(GeneratedField::Tty),
                            "linux" => Ok(GeneratedField::Linux),
                            "windows" => Ok(GeneratedField::Windows),
                            "CDIDevices" | "CDI_devices" => Ok(GeneratedField::CdiDevices),
                            "stopSignal" | "stop_signal" => Ok(GeneratedField::StopSignal),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ContainerConfig;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ContainerConfig")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ContainerConfig, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut metadata__ = None;
                let mut image__ = None;
                let mut command__ = None;
                let mut args__ = None;
                let mut working_dir__ = None;
                let mut envs__ = None;
                let mut mounts__ = None;
                let mut devices__ = None;
                let mut labels__ = None;
                let mut annotations__ = None;
                let mut log_path__ = None;
                let mut stdin__ = None;
                let mut stdin_once__ = None;
                let mut tty__ = None;
                let mut linux__ = None;
                let mut windows__ = None;
                let mut cdi_devices__ = None;
                let mut stop_signal__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Metadata => {
                            if metadata__.is_some() {
                                return Err(serde::de::Error::duplicate_field("metadata"));
                            }
                            metadata__ = map_.next_value()?;
                        }
                        GeneratedField::Image => {
                            if image__.is_some() {
                                return Err(serde::de::Error::duplicate_field("image"));
                            }
                            image__ = map_.next_value()?;
                        }
                        GeneratedField::Command => {
                            if command__.is_some() {
                                return Err(serde::de::Error::duplicate_field("command"));
                            }
                            command__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Args => {
                            if args__.is_some() {
                                return Err(serde::de::Error::duplicate_field("args"));
                            }
                            args__ = Some(map_.next_value()?);
                        }
                        GeneratedField::WorkingDir => {
                            if working_dir__.is_some() {
                                return Err(serde::de::Error::duplicate_field("workingDir"));
                            }
                            working_dir__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Envs => {
                            if envs__.is_some() {
                                return Err(serde::de::Error::duplicate_field("envs"));
                            }
                            envs__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Mounts => {
                            if mounts__.is_some() {
                                return Err(serde::de::Error::duplicate_field("mounts"));
                            }
                            mounts__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Devices => {
                            if devices__.is_some() {
                                return Err(serde::de::Error::duplicate_field("devices"));
                            }
                            devices__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Labels => {
                            if labels__.is_some() {
                                return Err(serde::de::Error::duplicate_field("labels"));
                            }
                            labels__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::Annotations => {
                            if annotations__.is_some() {
                                return Err(serde::de::Error::duplicate_field("annotations"));
                            }
                            annotations__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::LogPath => {
                            if log_path__.is_some() {
                                return Err(serde::de::Error::duplicate_field("logPath"));
                            }
                            log_path__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Stdin => {
                            if stdin__.is_some() {
                                return Err(serde::de::Error::duplicate_field("stdin"));
                            }
                            stdin__ = Some(map_.next_value()?);
                        }
                        GeneratedField::StdinOnce => {
                            if stdin_once__.is_some() {
                                return Err(serde::de::Error::duplicate_field("stdinOnce"));
                            }
                            stdin_once__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Tty => {
                            if tty__.is_some() {
                                return Err(serde::de::Error::duplicate_field("tty"));
                            }
                            tty__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Linux => {
                            if linux__.is_some() {
                                return Err(serde::de::Error::duplicate_field("linux"));
                            }
                            linux__ = map_.next_value()?;
                        }
                        GeneratedField::Windows => {
                            if windows__.is_some() {
                                return Err(serde::de::Error::duplicate_field("windows"));
                            }
                            windows__ = map_.next_value()?;
                        }
                        GeneratedField::CdiDevices => {
                            if cdi_devices__.is_some() {
                                return Err(serde::de::Error::duplicate_field("CDIDevices"));
                            }
                            cdi_devices__ = Some(map_.next_value()?);
                        }
                        GeneratedField::StopSignal => {
                            if stop_signal__.is_some() {
                                return Err(serde::de::Error::duplicate_field("stopSignal"));
                            }
                            stop_signal__ = Some(map_.next_value::<Signal>()? as i32);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ContainerConfig {
                    metadata: metadata__,
                    image: image__,
                    command: command__.unwrap_or_default(),
                    args: args__.unwrap_or_default(),
                    working_dir: working_dir__.unwrap_or_default(),
                    envs: envs__.unwrap_or_default(),
                    mounts: mounts__.unwrap_or_default(),
                    devices: devices__.unwrap_or_default(),
                    labels: labels__.unwrap_or_default(),
                    annotations: annotations__.unwrap_or_default(),
                    log_path: log_path__.unwrap_or_default(),
                    stdin: stdin__.unwrap_or_default(),
                    stdin_once: stdin_once__.unwrap_or_default(),
                    tty: tty__.unwrap_or_default(),
                    linux: linux__,
                    windows: windows__,
                    cdi_devices: cdi_devices__.unwrap_or_default(),
                    stop_signal: stop_signal__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ContainerConfig", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ContainerEventResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ContainerEventResponse", len)?;
        if true {
            struct_ser.serialize_field("containerId", &self.container_id)?;
        }
        if true {
            let v = ContainerEventType::try_from(self.container_event_type)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.container_event_type)))?;
            struct_ser.serialize_field("containerEventType", &v)?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("createdAt", ToString::to_string(&self.created_at).as_str())?;
        }
        if let Some(v) = self.pod_sandbox_status.as_ref() {
            struct_ser.serialize_field("podSandboxStatus", v)?;
        }
        if true {
            struct_ser.serialize_field("containersStatuses", &self.containers_statuses)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ContainerEventResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "container_id",
            "containerId",
            "container_event_type",
            "containerEventType",
            "created_at",
            "createdAt",
            "pod_sandbox_status",
            "podSandboxStatus",
            "containers_statuses",
            "containersStatuses",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            ContainerId,
            ContainerEventType,
            CreatedAt,
            PodSandboxStatus,
            ContainersStatuses,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "containerId" | "container_id" => Ok(GeneratedField::ContainerId),
                            "containerEventType" | "container_event_type" => Ok(GeneratedField::ContainerEventType),
                            "createdAt" | "created_at" => Ok(GeneratedField::CreatedAt),
                            "podSandboxStatus" | "pod_sandbox_status" => Ok(GeneratedField::PodSandboxStatus),
                            "containersStatuses" | "containers_statuses" => Ok(GeneratedField::ContainersStatuses),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ContainerEventResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ContainerEventResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ContainerEventResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut container_id__ = None;
                let mut container_event_type__ = None;
                let mut created_at__ = None;
                let mut pod_sandbox_status__ = None;
                let mut containers_statuses__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::ContainerId => {
                            if container_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containerId"));
                            }
                            container_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::ContainerEventType => {
                            if container_event_type__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containerEventType"));
                            }
                            container_event_type__ = Some(map_.next_value::<ContainerEventType>()? as i32);
                        }
                        GeneratedField::CreatedAt => {
                            if created_at__.is_some() {
                                return Err(serde::de::Error::duplicate_field("createdAt"));
                            }
                            created_at__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::PodSandboxStatus => {
                            if pod_sandbox_status__.is_some() {
                                return Err(serde::de::Error::duplicate_field("podSandboxStatus"));
                            }
                            pod_sandbox_status__ = map_.next_value()?;
                        }
                        GeneratedField::ContainersStatuses => {
                            if containers_statuses__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containersStatuses"));
                            }
                            containers_statuses__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ContainerEventResponse {
                    container_id: container_id__.unwrap_or_default(),
                    container_event_type: container_event_type__.unwrap_or_default(),
                    created_at: created_at__.unwrap_or_default(),
                    pod_sandbox_status: pod_sandbox_status__,
                    containers_statuses: containers_statuses__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ContainerEventResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ContainerEventType {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        let variant = match self {
            Self::ContainerCreatedEvent => "CONTAINER_CREATED_EVENT",
            Self::ContainerStartedEvent => "CONTAINER_STARTED_EVENT",
            Self::ContainerStoppedEvent => "CONTAINER_STOPPED_EVENT",
            Self::ContainerDeletedEvent => "CONTAINER_DELETED_EVENT",
        };
        serializer.serialize_str(variant)
    }
}
impl<'de> serde::Deserialize<'de> for ContainerEventType {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "CONTAINER_CREATED_EVENT",
            "CONTAINER_STARTED_EVENT",
            "CONTAINER_STOPPED_EVENT",
            "CONTAINER_DELETED_EVENT",
        ];

        struct GeneratedVisitor;

        impl serde::de::Visitor<'_> for GeneratedVisitor {
            type Value = ContainerEventType;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(formatter, "expected one of: {:?}", &FIELDS)
            }

            fn visit_i64<E>(self, v: i64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Signed(v), &self)
                    })
            }

            fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Unsigned(v), &self)
                    })
            }

            fn visit_str<E>(self, value: &str) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                match value {
                    "CONTAINER_CREATED_EVENT" => Ok(ContainerEventType::ContainerCreatedEvent),
                    "CONTAINER_STARTED_EVENT" => Ok(ContainerEventType::ContainerStartedEvent),
                    "CONTAINER_STOPPED_EVENT" => Ok(ContainerEventType::ContainerStoppedEvent),
                    "CONTAINER_DELETED_EVENT" => Ok(ContainerEventType::ContainerDeletedEvent),
                    _ => Err(serde::de::Error::unknown_variant(value, FIELDS)),
                }
            }
        }
        deserializer.deserialize_any(GeneratedVisitor)
    }
}
impl serde::Serialize for ContainerFilter {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ContainerFilter", len)?;
        if true {
            struct_ser.serialize_field("id", &self.id)?;
        }
        if let Some(v) = self.state.as_ref() {
            struct_ser.serialize_field("state", v)?;
        }
        if true {
            struct_ser.serialize_field("podSandboxId", &self.pod_sandbox_id)?;
        }
        if true {
            struct_ser.serialize_field("labelSelector", &self.label_selector)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ContainerFilter {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "id",
            "state",
            "pod_sandbox_id",
            "podSandboxId",
            "label_selector",
            "labelSelector",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Id,
            State,
            PodSandboxId,
            LabelSelector,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "id" => Ok(GeneratedField::Id),
                            "state" => Ok(GeneratedField::State),
                            "podSandboxId" | "pod_sandbox_id" => Ok(GeneratedField::PodSandboxId),
                            "labelSelector" | "label_selector" => Ok(GeneratedField::LabelSelector),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ContainerFilter;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ContainerFilter")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ContainerFilter, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut id__ = None;
                let mut state__ = None;
                let mut pod_sandbox_id__ = None;
                let mut label_selector__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Id => {
                            if id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("id"));
                            }
                            id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::State => {
                            if state__.is_some() {
                                return Err(serde::de::Error::duplicate_field("state"));
                            }
                            state__ = map_.next_value()?;
                        }
                        GeneratedField::PodSandboxId => {
                            if pod_sandbox_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("podSandboxId"));
                            }
                            pod_sandbox_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::LabelSelector => {
                            if label_selector__.is_some() {
                                return Err(serde::de::Error::duplicate_field("labelSelector"));
                            }
                            label_selector__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ContainerFilter {
                    id: id__.unwrap_or_default(),
                    state: state__,
                    pod_sandbox_id: pod_sandbox_id__.unwrap_or_default(),
                    label_selector: label_selector__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ContainerFilter", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ContainerMetadata {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ContainerMetadata", len)?;
        if true {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if true {
            struct_ser.serialize_field("attempt", &self.attempt)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ContainerMetadata {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "name",
            "attempt",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Name,
            Attempt,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "name" => Ok(GeneratedField::Name),
                            "attempt" => Ok(GeneratedField::Attempt),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ContainerMetadata;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ContainerMetadata")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ContainerMetadata, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut name__ = None;
                let mut attempt__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Attempt => {
                            if attempt__.is_some() {
                                return Err(serde::de::Error::duplicate_field("attempt"));
                            }
                            attempt__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ContainerMetadata {
                    name: name__.unwrap_or_default(),
                    attempt: attempt__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ContainerMetadata", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ContainerMetrics {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ContainerMetrics", len)?;
        if true {
            struct_ser.serialize_field("containerId", &self.container_id)?;
        }
        if true {
            struct_ser.serialize_field("metrics", &self.metrics)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ContainerMetrics {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "container_id",
            "containerId",
            "metrics",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            ContainerId,
            Metrics,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "containerId" | "container_id" => Ok(GeneratedField::ContainerId),
                            "metrics" => Ok(GeneratedField::Metrics),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ContainerMetrics;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ContainerMetrics")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ContainerMetrics, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut container_id__ = None;
                let mut metrics__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::ContainerId => {
                            if container_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containerId"));
                            }
                            container_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Metrics => {
                            if metrics__.is_some() {
                                return Err(serde::de::Error::duplicate_field("metrics"));
                            }
                            metrics__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ContainerMetrics {
                    container_id: container_id__.unwrap_or_default(),
                    metrics: metrics__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ContainerMetrics", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ContainerResources {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ContainerResources", len)?;
        if let Some(v) = self.linux.as_ref() {
            struct_ser.serialize_field("linux", v)?;
        }
        if let Some(v) = self.windows.as_ref() {
            struct_ser.serialize_field("windows", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ContainerResources {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "linux",
            "windows",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Linux,
            Windows,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "linux" => Ok(GeneratedField::Linux),
                            "windows" => Ok(GeneratedField::Windows),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ContainerResources;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ContainerResources")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ContainerResources, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut linux__ = None;
                let mut windows__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Linux => {
                            if linux__.is_some() {
                                return Err(serde::de::Error::duplicate_field("linux"));
                            }
                            linux__ = map_.next_value()?;
                        }
                        GeneratedField::Windows => {
                            if windows__.is_some() {
                                return Err(serde::de::Error::duplicate_field("windows"));
                            }
                            windows__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ContainerResources {
                    linux: linux__,
                    windows: windows__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ContainerResources", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ContainerState {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        let variant = match self {
            Self::ContainerCreated => "CONTAINER_CREATED",
            Self::ContainerRunning => "CONTAINER_RUNNING",
            Self::ContainerExited => "CONTAINER_EXITED",
            Self::ContainerUnknown => "CONTAINER_UNKNOWN",
        };
        serializer.serialize_str(variant)
    }
}
impl<'de> serde::Deserialize<'de> for ContainerState {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "CONTAINER_CREATED",
            "CONTAINER_RUNNING",
            "CONTAINER_EXITED",
            "CONTAINER_UNKNOWN",
        ];

        struct GeneratedVisitor;

        impl serde::de::Visitor<'_> for GeneratedVisitor {
            type Value = ContainerState;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(formatter, "expected one of: {:?}", &FIELDS)
            }

            fn visit_i64<E>(self, v: i64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Signed(v), &self)
                    })
            }

            fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Unsigned(v), &self)
                    })
            }

            fn visit_str<E>(self, value: &str) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                match value {
                    "CONTAINER_CREATED" => Ok(ContainerState::ContainerCreated),
                    "CONTAINER_RUNNING" => Ok(ContainerState::ContainerRunning),
                    "CONTAINER_EXITED" => Ok(ContainerState::ContainerExited),
                    "CONTAINER_UNKNOWN" => Ok(ContainerState::ContainerUnknown),
                    _ => Err(serde::de::Error::unknown_variant(value, FIELDS)),
                }
            }
        }
        deserializer.deserialize_any(GeneratedVisitor)
    }
}
impl serde::Serialize for ContainerStateValue {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ContainerStateValue", len)?;
        if true {
            let v = ContainerState::try_from(self.state)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.state)))?;
            struct_ser.serialize_field("state", &v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ContainerStateValue {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "state",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            State,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "state" => Ok(GeneratedField::State),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ContainerStateValue;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ContainerStateValue")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ContainerStateValue, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut state__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::State => {
                            if state__.is_some() {
                                return Err(serde::de::Error::duplicate_field("state"));
                            }
                            state__ = Some(map_.next_value::<ContainerState>()? as i32);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ContainerStateValue {
                    state: state__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ContainerStateValue", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ContainerStats {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ContainerStats", len)?;
        if let Some(v) = self.attributes.as_ref() {
            struct_ser.serialize_field("attributes", v)?;
        }
        if let Some(v) = self.cpu.as_ref() {
            struct_ser.serialize_field("cpu", v)?;
        }
        if let Some(v) = self.memory.as_ref() {
            struct_ser.serialize_field("memory", v)?;
        }
        if let Some(v) = self.writable_layer.as_ref() {
            struct_ser.serialize_field("writableLayer", v)?;
        }
        if let Some(v) = self.swap.as_ref() {
            struct_ser.serialize_field("swap", v)?;
        }
        if let Some(v) = self.io.as_ref() {
            struct_ser.serialize_field("io", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ContainerStats {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "attributes",
            "cpu",
            "memory",
            "writable_layer",
            "writableLayer",
            "swap",
            "io",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Attributes,
            Cpu,
            Memory,
            WritableLayer,
            Swap,
            Io,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "attributes" => Ok(GeneratedField::Attributes),
                            "cpu" => Ok(GeneratedField::Cpu),
                            "memory" => Ok(GeneratedField::Memory),
                            "writableLayer" | "writable_layer" => Ok(GeneratedField::WritableLayer),
                            "swap" => Ok(GeneratedField::Swap),
                            "io" => Ok(GeneratedField::Io),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ContainerStats;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ContainerStats")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ContainerStats, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut attributes__ = None;
                let mut cpu__ = None;
                let mut memory__ = None;
                let mut writable_layer__ = None;
                let mut swap__ = None;
                let mut io__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Attributes => {
                            if attributes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("attributes"));
                            }
                            attributes__ = map_.next_value()?;
                        }
                        GeneratedField::Cpu => {
                            if cpu__.is_some() {
                                return Err(serde::de::Error::duplicate_field("cpu"));
                            }
                            cpu__ = map_.next_value()?;
                        }
                        GeneratedField::Memory => {
                            if memory__.is_some() {
                                return Err(serde::de::Error::duplicate_field("memory"));
                            }
                            memory__ = map_.next_value()?;
                        }
                        GeneratedField::WritableLayer => {
                            if writable_layer__.is_some() {
                                return Err(serde::de::Error::duplicate_field("writableLayer"));
                            }
                            writable_layer__ = map_.next_value()?;
                        }
                        GeneratedField::Swap => {
                            if swap__.is_some() {
                                return Err(serde::de::Error::duplicate_field("swap"));
                            }
                            swap__ = map_.next_value()?;
                        }
                        GeneratedField::Io => {
                            if io__.is_some() {
                                return Err(serde::de::Error::duplicate_field("io"));
                            }
                            io__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ContainerStats {
                    attributes: attributes__,
                    cpu: cpu__,
                    memory: memory__,
                    writable_layer: writable_layer__,
                    swap: swap__,
                    io: io__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ContainerStats", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ContainerStatsFilter {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ContainerStatsFilter", len)?;
        if true {
            struct_ser.serialize_field("id", &self.id)?;
        }
        if true {
            struct_ser.serialize_field("podSandboxId", &self.pod_sandbox_id)?;
        }
        if true {
            struct_ser.serialize_field("labelSelector", &self.label_selector)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ContainerStatsFilter {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "id",
            "pod_sandbox_id",
            "podSandboxId",
            "label_selector",
            "labelSelector",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Id,
            PodSandboxId,
            LabelSelector,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "id" => Ok(GeneratedField::Id),
                            "podSandboxId" | "pod_sandbox_id" => Ok(GeneratedField::PodSandboxId),
                            "labelSelector" | "label_selector" => Ok(GeneratedField::LabelSelector),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ContainerStatsFilter;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ContainerStatsFilter")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ContainerStatsFilter, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut id__ = None;
                let mut pod_sandbox_id__ = None;
                let mut label_selector__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Id => {
                            if id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("id"));
                            }
                            id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::PodSandboxId => {
                            if pod_sandbox_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("podSandboxId"));
                            }
                            pod_sandbox_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::LabelSelector => {
                            if label_selector__.is_some() {
                                return Err(serde::de::Error::duplicate_field("labelSelector"));
                            }
                            label_selector__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ContainerStatsFilter {
                    id: id__.unwrap_or_default(),
                    pod_sandbox_id: pod_sandbox_id__.unwrap_or_default(),
                    label_selector: label_selector__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ContainerStatsFilter", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ContainerStatsRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ContainerStatsRequest", len)?;
        if true {
            struct_ser.serialize_field("containerId", &self.container_id)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ContainerStatsRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "container_id",
            "containerId",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            ContainerId,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "containerId" | "container_id" => Ok(GeneratedField::ContainerId),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ContainerStatsRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ContainerStatsRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ContainerStatsRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut container_id__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::ContainerId => {
                            if container_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containerId"));
                            }
                            container_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ContainerStatsRequest {
                    container_id: container_id__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ContainerStatsRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ContainerStatsResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ContainerStatsResponse", len)?;
        if let Some(v) = self.stats.as_ref() {
            struct_ser.serialize_field("stats", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ContainerStatsResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "stats",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Stats,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "stats" => Ok(GeneratedField::Stats),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ContainerStatsResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ContainerStatsResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ContainerStatsResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut stats__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Stats => {
                            if stats__.is_some() {
                                return Err(serde::de::Error::duplicate_field("stats"));
                            }
                            stats__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ContainerStatsResponse {
                    stats: stats__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ContainerStatsResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ContainerStatus {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ContainerStatus", len)?;
        if true {
            struct_ser.serialize_field("id", &self.id)?;
        }
        if let Some(v) = self.metadata.as_ref() {
            struct_ser.serialize_field("metadata", v)?;
        }
        if true {
            let v = ContainerState::try_from(self.state)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.state)))?;
            struct_ser.serialize_field("state", &v)?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("createdAt", ToString::to_string(&self.created_at).as_str())?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("startedAt", ToString::to_string(&self.started_at).as_str())?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("finishedAt", ToString::to_string(&self.finished_at).as_str())?;
        }
        if true {
            struct_ser.serialize_field("exitCode", &self.exit_code)?;
        }
        if let Some(v) = self.image.as_ref() {
            struct_ser.serialize_field("image", v)?;
        }
        if true {
            struct_ser.serialize_field("imageRef", &self.image_ref)?;
        }
        if true {
            struct_ser.serialize_field("reason", &self.reason)?;
        }
        if true {
            struct_ser.serialize_field("message", &self.message)?;
        }
        if true {
            struct_ser.serialize_field("labels", &self.labels)?;
        }
        if true {
            struct_ser.serialize_field("annotations", &self.annotations)?;
        }
        if true {
            struct_ser.serialize_field("mounts", &self.mounts)?;
        }
        if true {
            struct_ser.serialize_field("logPath", &self.log_path)?;
        }
        if let Some(v) = self.resources.as_ref() {
            struct_ser.serialize_field("resources", v)?;
        }
        if true {
            struct_ser.serialize_field("imageId", &self.image_id)?;
        }
        if let Some(v) = self.user.as_ref() {
            struct_ser.serialize_field("user", v)?;
        }
        if true {
            let v = Signal::try_from(self.stop_signal)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.stop_signal)))?;
            struct_ser.serialize_field("stopSignal", &v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ContainerStatus {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "id",
            "metadata",
            "state",
            "created_at",
            "createdAt",
            "started_at",
            "startedAt",
            "finished_at",
            "finishedAt",
            "exit_code",
            "exitCode",
            "image",
            "image_ref",
            "imageRef",
            "reason",
            "message",
            "labels",
            "annotations",
            "mounts",
            "log_path",
            "logPath",
            "resources",
            "image_id",
            "imageId",
            "user",
            "stop_signal",
            "stopSignal",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Id,
            Metadata,
            State,
            CreatedAt,
            StartedAt,
            FinishedAt,
            ExitCode,
            Image,
            ImageRef,
            Reason,
            Message,
            Labels,
            Annotations,
            Mounts,
            LogPath,
            Resources,
            ImageId,
            User,
            StopSignal,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "id" => Ok(GeneratedField::Id),
                            "metadata" => Ok(GeneratedField::Metadata),
                            "state" => Ok(GeneratedField::State),
                            "createdAt" | "created_at" => Ok(GeneratedField::CreatedAt),
                            "startedAt" | "started_at" => Ok(GeneratedField::StartedAt),
                            "finishedAt" | "finished_at" => Ok(GeneratedField::FinishedAt),
                            "exitCode" | "exit_code" => Ok(GeneratedField::ExitCode),
                            "image" => Ok(GeneratedField::Image),
                            "imageRef" | "image_ref" => Ok(GeneratedField::ImageRef),
                            "reason" => Ok(GeneratedField::Reason),
                            "message" => Ok(GeneratedField::Message),
                            "labels" => Ok(GeneratedField::Labels),
                            "annotations" => Ok(GeneratedField::Annotations),
                            "mounts" => Ok(GeneratedField::Mounts),
                            "logPath" | "log_path" => Ok(GeneratedField::LogPath),
                            "resources" => Ok(GeneratedField::Resources),
                            "imageId" | "image_id" => Ok(GeneratedField::ImageId),
                            "user" => Ok(GeneratedField::User),
                            "stopSignal" | "stop_signal" => Ok(GeneratedField::StopSignal),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ContainerStatus;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ContainerStatus")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ContainerStatus, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut id__ = None;
                let mut metadata__ = None;
                let mut state__ = None;
                let mut created_at__ = None;
                let mut started_at__ = None;
                let mut finished_at__ = None;
                let mut exit_code__ = None;
                let mut image__ = None;
                let mut image_ref__ = None;
                let mut reason__ = None;
                let mut message__ = None;
                let mut labels__ = None;
                let mut annotations__ = None;
                let mut mounts__ = None;
                let mut log_path__ = None;
                let mut resources__ = None;
                let mut image_id__ = None;
                let mut user__ = None;
                let mut stop_signal__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Id => {
                            if id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("id"));
                            }
                            id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Metadata => {
                            if metadata__.is_some() {
                                return Err(serde::de::Error::duplicate_field("metadata"));
                            }
                            metadata__ = map_.next_value()?;
                        }
                        GeneratedField::State => {
                            if state__.is_some() {
                                return Err(serde::de::Error::duplicate_field("state"));
                            }
                            state__ = Some(map_.next_value::<ContainerState>()? as i32);
                        }
                        GeneratedField::CreatedAt => {
                            if created_at__.is_some() {
                                return Err(serde::de::Error::duplicate_field("createdAt"));
                            }
                            created_at__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::StartedAt => {
                            if started_at__.is_some() {
                                return Err(serde::de::Error::duplicate_field("startedAt"));
                            }
                            started_at__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::FinishedAt => {
                            if finished_at__.is_some() {
                                return Err(serde::de::Error::duplicate_field("finishedAt"));
                            }
                            finished_at__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::ExitCode => {
                            if exit_code__.is_some() {
                                return Err(serde::de::Error::duplicate_field("exitCode"));
                            }
                            exit_code__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::Image => {
                            if image__.is_some() {
                                return Err(serde::de::Error::duplicate_field("image"));
                            }
                            image__ = map_.next_value()?;
                        }
                        GeneratedField::ImageRef => {
                            if image_ref__.is_some() {
                                return Err(serde::de::Error::duplicate_field("imageRef"));
                            }
                            image_ref__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Reason => {
                            if reason__.is_some() {
                                return Err(serde::de::Error::duplicate_field("reason"));
                            }
                            reason__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Message => {
                            if message__.is_some() {
                                return Err(serde::de::Error::duplicate_field("message"));
                            }
                            message__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Labels => {
                            if labels__.is_some() {
                                return Err(serde::de::Error::duplicate_field("labels"));
                            }
                            labels__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::Annotations => {
                            if annotations__.is_some() {
                                return Err(serde::de::Error::duplicate_field("annotations"));
                            }
                            annotations__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::Mounts => {
                            if mounts__.is_some() {
                                return Err(serde::de::Error::duplicate_field("mounts"));
                            }
                            mounts__ = Some(map_.next_value()?);
                        }
                        GeneratedField::LogPath => {
                            if log_path__.is_some() {
                                return Err(serde::de::Error::duplicate_field("logPath"));
                            }
                            log_path__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Resources => {
                            if resources__.is_some() {
                                return Err(serde::de::Error::duplicate_field("resources"));
                            }
                            resources__ = map_.next_value()?;
                        }
                        GeneratedField::ImageId => {
                            if image_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("imageId"));
                            }
                            image_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::User => {
                            if user__.is_some() {
                                return Err(serde::de::Error::duplicate_field("user"));
                            }
                            user__ = map_.next_value()?;
                        }
                        GeneratedField::StopSignal => {
                            if stop_signal__.is_some() {
                                return Err(serde::de::Error::duplicate_field("stopSignal"));
                            }
                            stop_signal__ = Some(map_.next_value::<Signal>()? as i32);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ContainerStatus {
                    id: id__.unwrap_or_default(),
                    metadata: metadata__,
                    state: state__.unwrap_or_default(),
                    created_at: created_at__.unwrap_or_default(),
                    started_at: started_at__.unwrap_or_default(),
                    finished_at: finished_at__.unwrap_or_default(),
                    exit_code: exit_code__.unwrap_or_default(),
                    image: image__,
                    image_ref: image_ref__.unwrap_or_default(),
                    reason: reason__.unwrap_or_default(),
                    message: message__.unwrap_or_default(),
                    labels: labels__.unwrap_or_default(),
                    annotations: annotations__.unwrap_or_default(),
                    mounts: mounts__.unwrap_or_default(),
                    log_path: log_path__.unwrap_or_default(),
                    resources: resources__,
                    image_id: image_id__.unwrap_or_default(),
                    user: user__,
                    stop_signal: stop_signal__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ContainerStatus", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ContainerStatusRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ContainerStatusRequest", len)?;
        if true {
            struct_ser.serialize_field("containerId", &self.container_id)?;
        }
        if true {
            struct_ser.serialize_field("verbose", &self.verbose)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ContainerStatusRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "container_id",
            "containerId",
            "verbose",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            ContainerId,
            Verbose,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "containerId" | "container_id" => Ok(GeneratedField::ContainerId),
                            "verbose" => Ok(GeneratedField::Verbose),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ContainerStatusRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ContainerStatusRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ContainerStatusRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut container_id__ = None;
                let mut verbose__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::ContainerId => {
                            if container_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containerId"));
                            }
                            container_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Verbose => {
                            if verbose__.is_some() {
                                return Err(serde::de::Error::duplicate_field("verbose"));
                            }
                            verbose__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ContainerStatusRequest {
                    container_id: container_id__.unwrap_or_default(),
                    verbose: verbose__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ContainerStatusRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ContainerStatusResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ContainerStatusResponse", len)?;
        if let Some(v) = self.status.as_ref() {
            struct_ser.serialize_field("status", v)?;
        }
        if true {
            struct_ser.serialize_field("info", &self.info)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ContainerStatusResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "status",
            "info",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Status,
            Info,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "status" => Ok(GeneratedField::Status),
                            "info" => Ok(GeneratedField::Info),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ContainerStatusResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ContainerStatusResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ContainerStatusResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut status__ = None;
                let mut info__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Status => {
                            if status__.is_some() {
                                return Err(serde::de::Error::duplicate_field("status"));
                            }
                            status__ = map_.next_value()?;
                        }
                        GeneratedField::Info => {
                            if info__.is_some() {
                                return Err(serde::de::Error::duplicate_field("info"));
                            }
                            info__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ContainerStatusResponse {
                    status: status__,
                    info: info__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ContainerStatusResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ContainerUser {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ContainerUser", len)?;
        if let Some(v) = self.linux.as_ref() {
            struct_ser.serialize_field("linux", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ContainerUser {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "linux",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Linux,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "linux" => Ok(GeneratedField::Linux),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ContainerUser;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ContainerUser")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ContainerUser, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut linux__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Linux => {
                            if linux__.is_some() {
                                return Err(serde::de::Error::duplicate_field("linux"));
                            }
                            linux__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ContainerUser {
                    linux: linux__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ContainerUser", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for CpuUsage {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.CpuUsage", len)?;
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("timestamp", ToString::to_string(&self.timestamp).as_str())?;
        }
        if let Some(v) = self.usage_core_nano_seconds.as_ref() {
            struct_ser.serialize_field("usageCoreNanoSeconds", v)?;
        }
        if let Some(v) = self.usage_nano_cores.as_ref() {
            struct_ser.serialize_field("usageNanoCores", v)?;
        }
        if let Some(v) = self.psi.as_ref() {
            struct_ser.serialize_field("psi", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for CpuUsage {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "timestamp",
            "usage_core_nano_seconds",
            "usageCoreNanoSeconds",
            "usage_nano_cores",
            "usageNanoCores",
            "psi",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Timestamp,
            UsageCoreNanoSeconds,
            UsageNanoCores,
            Psi,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "timestamp" => Ok(GeneratedField::Timestamp),
                            "usageCoreNanoSeconds" | "usage_core_nano_seconds" => Ok(GeneratedField::UsageCoreNanoSeconds),
                            "usageNanoCores" | "usage_nano_cores" => Ok(GeneratedField::UsageNanoCores),
                            "psi" => Ok(GeneratedField::Psi),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = CpuUsage;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.CpuUsage")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<CpuUsage, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut timestamp__ = None;
                let mut usage_core_nano_seconds__ = None;
                let mut usage_nano_cores__ = None;
                let mut psi__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Timestamp => {
                            if timestamp__.is_some() {
                                return Err(serde::de::Error::duplicate_field("timestamp"));
                            }
                            timestamp__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::UsageCoreNanoSeconds => {
                            if usage_core_nano_seconds__.is_some() {
                                return Err(serde::de::Error::duplicate_field("usageCoreNanoSeconds"));
                            }
                            usage_core_nano_seconds__ = map_.next_value()?;
                        }
                        GeneratedField::UsageNanoCores => {
                            if usage_nano_cores__.is_some() {
                                return Err(serde::de::Error::duplicate_field("usageNanoCores"));
                            }
                            usage_nano_cores__ = map_.next_value()?;
                        }
                        GeneratedField::Psi => {
                            if psi__.is_some() {
                                return Err(serde::de::Error::duplicate_field("psi"));
                            }
                            psi__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(CpuUsage {
                    timestamp: timestamp__.unwrap_or_default(),
                    usage_core_nano_seconds: usage_core_nano_seconds__,
                    usage_nano_cores: usage_nano_cores__,
                    psi: psi__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.CpuUsage", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for CreateContainerRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.CreateContainerRequest", len)?;
        if true {
            struct_ser.serialize_field("podSandboxId", &self.pod_sandbox_id)?;
        }
        if let Some(v) = self.config.as_ref() {
            struct_ser.serialize_field("config", v)?;
        }
        if let Some(v) = self.sandbox_config.as_ref() {
            struct_ser.serialize_field("sandboxConfig", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for CreateContainerRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "pod_sandbox_id",
            "podSandboxId",
            "config",
            "sandbox_config",
            "sandboxConfig",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            PodSandboxId,
            Config,
            SandboxConfig,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "podSandboxId" | "pod_sandbox_id" => Ok(GeneratedField::PodSandboxId),
                            "config" => Ok(GeneratedField::Config),
                            "sandboxConfig" | "sandbox_config" => Ok(GeneratedField::SandboxConfig),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = CreateContainerRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.CreateContainerRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<CreateContainerRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut pod_sandbox_id__ = None;
                let mut config__ = None;
                let mut sandbox_config__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::PodSandboxId => {
                            if pod_sandbox_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("podSandboxId"));
                            }
                            pod_sandbox_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Config => {
                            if config__.is_some() {
                                return Err(serde::de::Error::duplicate_field("config"));
                            }
                            config__ = map_.next_value()?;
                        }
                        GeneratedField::SandboxConfig => {
                            if sandbox_config__.is_some() {
                                return Err(serde::de::Error::duplicate_field("sandboxConfig"));
                            }
                            sandbox_config__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(CreateContainerRequest {
                    pod_sandbox_id: pod_sandbox_id__.unwrap_or_default(),
                    config: config__,
                    sandbox_config: sandbox_config__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.CreateContainerRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for CreateContainerResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.CreateContainerResponse", len)?;
        if true {
            struct_ser.serialize_field("containerId", &self.container_id)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for CreateContainerResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "container_id",
            "containerId",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            ContainerId,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "containerId" | "container_id" => Ok(GeneratedField::ContainerId),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = CreateContainerResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.CreateContainerResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<CreateContainerResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut container_id__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::ContainerId => {
                            if container_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containerId"));
                            }
                            container_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(CreateContainerResponse {
                    container_id: container_id__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.CreateContainerResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for DnsConfig {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.DNSConfig", len)?;
        if true {
            struct_ser.serialize_field("servers", &self.servers)?;
        }
        if true {
            struct_ser.serialize_field("searches", &self.searches)?;
        }
        if true {
            struct_ser.serialize_field("options", &self.options)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for DnsConfig {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "servers",
            "searches",
            "options",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Servers,
            Searches,
            Options,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "servers" => Ok(GeneratedField::Servers),
                            "searches" => Ok(GeneratedField::Searches),
                            "options" => Ok(GeneratedField::Options),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = DnsConfig;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.DNSConfig")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<DnsConfig, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut servers__ = None;
                let mut searches__ = None;
                let mut options__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Servers => {
                            if servers__.is_some() {
                                return Err(serde::de::Error::duplicate_field("servers"));
                            }
                            servers__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Searches => {
                            if searches__.is_some() {
                                return Err(serde::de::Error::duplicate_field("searches"));
                            }
                            searches__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Options => {
                            if options__.is_some() {
                                return Err(serde::de::Error::duplicate_field("options"));
                            }
                            options__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(DnsConfig {
                    servers: servers__.unwrap_or_default(),
                    searches: searches__.unwrap_or_default(),
                    options: options__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.DNSConfig", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for Device {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.Device", len)?;
        if true {
            struct_ser.serialize_field("containerPath", &self.container_path)?;
        }
        if true {
            struct_ser.serialize_field("hostPath", &self.host_path)?;
        }
        if true {
            struct_ser.serialize_field("permissions", &self.permissions)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for Device {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "container_path",
            "containerPath",
            "host_path",
            "hostPath",
            "permissions",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            ContainerPath,
            HostPath,
            Permissions,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "containerPath" | "container_path" => Ok(GeneratedField::ContainerPath),
                            "hostPath" | "host_path" => Ok(GeneratedField::HostPath),
                            "permissions" => Ok(GeneratedField::Permissions),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = Device;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.Device")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<Device, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut container_path__ = None;
                let mut host_path__ = None;
                let mut permissions__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::ContainerPath => {
                            if container_path__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containerPath"));
                            }
                            container_path__ = Some(map_.next_value()?);
                        }
                        GeneratedField::HostPath => {
                            if host_path__.is_some() {
                                return Err(serde::de::Error::duplicate_field("hostPath"));
                            }
                            host_path__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Permissions => {
                            if permissions__.is_some() {
                                return Err(serde::de::Error::duplicate_field("permissions"));
                            }
                            permissions__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(Device {
                    container_path: container_path__.unwrap_or_default(),
                    host_path: host_path__.unwrap_or_default(),
                    permissions: permissions__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.Device", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ExecRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ExecRequest", len)?;
        if true {
            struct_ser.serialize_field("containerId", &self.container_id)?;
        }
        if true {
            struct_ser.serialize_field("cmd", &self.cmd)?;
        }
        if true {
            struct_ser.serialize_field("tty", &self.tty)?;
        }
        if true {
            struct_ser.serialize_field("stdin", &self.stdin)?;
        }
        if true {
            struct_ser.serialize_field("stdout", &self.stdout)?;
        }
        if true {
            struct_ser.serialize_field("stderr", &self.stderr)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ExecRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "container_id",
            "containerId",
            "cmd",
            "tty",
            "stdin",
            "stdout",
            "stderr",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            ContainerId,
            Cmd,
            Tty,
            Stdin,
            Stdout,
            Stderr,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "containerId" | "container_id" => Ok(GeneratedField::ContainerId),
                            "cmd" => Ok(GeneratedField::Cmd),
                            "tty" => Ok(GeneratedField::Tty),
                            "stdin" => Ok(GeneratedField::Stdin),
                            "stdout" => Ok(GeneratedField::Stdout),
                            "stderr" => Ok(GeneratedField::Stderr),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ExecRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ExecRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ExecRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut container_id__ = None;
                let mut cmd__ = None;
                let mut tty__ = None;
                let mut stdin__ = None;
                let mut stdout__ = None;
                let mut stderr__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::ContainerId => {
                            if container_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containerId"));
                            }
                            container_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Cmd => {
                            if cmd__.is_some() {
                                return Err(serde::de::Error::duplicate_field("cmd"));
                            }
                            cmd__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Tty => {
                            if tty__.is_some() {
                                return Err(serde::de::Error::duplicate_field("tty"));
                            }
                            tty__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Stdin => {
                            if stdin__.is_some() {
                                return Err(serde::de::Error::duplicate_field("stdin"));
                            }
                            stdin__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Stdout => {
                            if stdout__.is_some() {
                                return Err(serde::de::Error::duplicate_field("stdout"));
                            }
                            stdout__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Stderr => {
                            if stderr__.is_some() {
                                return Err(serde::de::Error::duplicate_field("stderr"));
                            }
                            stderr__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ExecRequest {
                    container_id: container_id__.unwrap_or_default(),
                    cmd: cmd__.unwrap_or_default(),
                    tty: tty__.unwrap_or_default(),
                    stdin: stdin__.unwrap_or_default(),
                    stdout: stdout__.unwrap_or_default(),
                    stderr: stderr__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ExecRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ExecResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ExecResponse", len)?;
        if true {
            struct_ser.serialize_field("url", &self.url)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ExecResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "url",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Url,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "url" => Ok(GeneratedField::Url),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ExecResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ExecResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ExecResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut url__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Url => {
                            if url__.is_some() {
                                return Err(serde::de::Error::duplicate_field("url"));
                            }
                            url__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ExecResponse {
                    url: url__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ExecResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ExecSyncRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ExecSyncRequest", len)?;
        if true {
            struct_ser.serialize_field("containerId", &self.container_id)?;
        }
        if true {
            struct_ser.serialize_field("cmd", &self.cmd)?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("timeout", ToString::to_string(&self.timeout).as_str())?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ExecSyncRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "container_id",
            "containerId",
            "cmd",
            "timeout",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            ContainerId,
            Cmd,
            Timeout,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "containerId" | "container_id" => Ok(GeneratedField::ContainerId),
                            "cmd" => Ok(GeneratedField::Cmd),
                            "timeout" => Ok(GeneratedField::Timeout),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ExecSyncRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ExecSyncRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ExecSyncRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut container_id__ = None;
                let mut cmd__ = None;
                let mut timeout__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::ContainerId => {
                            if container_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containerId"));
                            }
                            container_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Cmd => {
                            if cmd__.is_some() {
                                return Err(serde::de::Error::duplicate_field("cmd"));
                            }
                            cmd__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Timeout => {
                            if timeout__.is_some() {
                                return Err(serde::de::Error::duplicate_field("timeout"));
                            }
                            timeout__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ExecSyncRequest {
                    container_id: container_id__.unwrap_or_default(),
                    cmd: cmd__.unwrap_or_default(),
                    timeout: timeout__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ExecSyncRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ExecSyncResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ExecSyncResponse", len)?;
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("stdout", pbjson::private::base64::encode(&self.stdout).as_str())?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("stderr", pbjson::private::base64::encode(&self.stderr).as_str())?;
        }
        if true {
            struct_ser.serialize_field("exitCode", &self.exit_code)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ExecSyncResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "stdout",
            "stderr",
            "exit_code",
            "exitCode",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Stdout,
            Stderr,
            ExitCode,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "stdout" => Ok(GeneratedField::Stdout),
                            "stderr" => Ok(GeneratedField::Stderr),
                            "exitCode" | "exit_code" => Ok(GeneratedField::ExitCode),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ExecSyncResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ExecSyncResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ExecSyncResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut stdout__ = None;
                let mut stderr__ = None;
                let mut exit_code__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Stdout => {
                            if stdout__.is_some() {
                                return Err(serde::de::Error::duplicate_field("stdout"));
                            }
                            stdout__ = 
                                Some(map_.next_value::<::pbjson::private::BytesDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::Stderr => {
                            if stderr__.is_some() {
                                return Err(serde::de::Error::duplicate_field("stderr"));
                            }
                            stderr__ = 
                                Some(map_.next_value::<::pbjson::private::BytesDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::ExitCode => {
                            if exit_code__.is_some() {
                                return Err(serde::de::Error::duplicate_field("exitCode"));
                            }
                            exit_code__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ExecSyncResponse {
                    stdout: stdout__.unwrap_or_default(),
                    stderr: stderr__.unwrap_or_default(),
                    exit_code: exit_code__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ExecSyncResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for FilesystemIdentifier {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.FilesystemIdentifier", len)?;
        if true {
            struct_ser.serialize_field("mountpoint", &self.mountpoint)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for FilesystemIdentifier {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "mountpoint",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Mountpoint,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "mountpoint" => Ok(GeneratedField::Mountpoint),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = FilesystemIdentifier;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.FilesystemIdentifier")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<FilesystemIdentifier, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut mountpoint__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Mountpoint => {
                            if mountpoint__.is_some() {
                                return Err(serde::de::Error::duplicate_field("mountpoint"));
                            }
                            mountpoint__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(FilesystemIdentifier {
                    mountpoint: mountpoint__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.FilesystemIdentifier", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for FilesystemUsage {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.FilesystemUsage", len)?;
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("timestamp", ToString::to_string(&self.timestamp).as_str())?;
        }
        if let Some(v) = self.fs_id.as_ref() {
            struct_ser.serialize_field("fsId", v)?;
        }
        if let Some(v) = self.used_bytes.as_ref() {
            struct_ser.serialize_field("usedBytes", v)?;
        }
        if let Some(v) = self.inodes_used.as_ref() {
            struct_ser.serialize_field("inodesUsed", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for FilesystemUsage {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "timestamp",
            "fs_id",
            "fsId",
            "used_bytes",
            "usedBytes",
            "inodes_used",
            "inodesUsed",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Timestamp,
            FsId,
            UsedBytes,
            InodesUsed,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "timestamp" => Ok(GeneratedField::Timestamp),
                            "fsId" | "fs_id" => Ok(GeneratedField::FsId),
                            "usedBytes" | "used_bytes" => Ok(GeneratedField::UsedBytes),
                            "inodesUsed" | "inodes_used" => Ok(GeneratedField::InodesUsed),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = FilesystemUsage;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.FilesystemUsage")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<FilesystemUsage, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut timestamp__ = None;
                let mut fs_id__ = None;
                let mut used_bytes__ = None;
                let mut inodes_used__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Timestamp => {
                            if timestamp__.is_some() {
                                return Err(serde::de::Error::duplicate_field("timestamp"));
                            }
                            timestamp__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::FsId => {
                            if fs_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("fsId"));
                            }
                            fs_id__ = map_.next_value()?;
                        }
                        GeneratedField::UsedBytes => {
                            if used_bytes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("usedBytes"));
                            }
                            used_bytes__ = map_.next_value()?;
                        }
                        GeneratedField::InodesUsed => {
                            if inodes_used__.is_some() {
                                return Err(serde::de::Error::duplicate_field("inodesUsed"));
                            }
                            inodes_used__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(FilesystemUsage {
                    timestamp: timestamp__.unwrap_or_default(),
                    fs_id: fs_id__,
                    used_bytes: used_bytes__,
                    inodes_used: inodes_used__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.FilesystemUsage", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for GetEventsRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let len = 0;
        let struct_ser = serializer.serialize_struct("runtime.v1.GetEventsRequest", len)?;
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for GetEventsRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                            Ok(GeneratedField::__SkipField__)
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = GetEventsRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.GetEventsRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<GetEventsRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                while map_.next_key::<GeneratedField>()?.is_some() {
                    let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(GetEventsRequest {
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.GetEventsRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for HugepageLimit {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.HugepageLimit", len)?;
        if true {
            struct_ser.serialize_field("pageSize", &self.page_size)?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("limit", ToString::to_string(&self.limit).as_str())?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for HugepageLimit {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "page_size",
            "pageSize",
            "limit",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            PageSize,
            Limit,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "pageSize" | "page_size" => Ok(GeneratedField::PageSize),
                            "limit" => Ok(GeneratedField::Limit),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = HugepageLimit;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.HugepageLimit")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<HugepageLimit, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut page_size__ = None;
                let mut limit__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::PageSize => {
                            if page_size__.is_some() {
                                return Err(serde::de::Error::duplicate_field("pageSize"));
                            }
                            page_size__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Limit => {
                            if limit__.is_some() {
                                return Err(serde::de::Error::duplicate_field("limit"));
                            }
                            limit__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(HugepageLimit {
                    page_size: page_size__.unwrap_or_default(),
                    limit: limit__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.HugepageLimit", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for IdMapping {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.IDMapping", len)?;
        if true {
            struct_ser.serialize_field("hostId", &self.host_id)?;
        }
        if true {
            struct_ser.serialize_field("containerId", &self.container_id)?;
        }
        if true {
            struct_ser.serialize_field("length", &self.length)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for IdMapping {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "host_id",
            "hostId",
            "container_id",
            "containerId",
            "length",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            HostId,
            ContainerId,
            Length,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "hostId" | "host_id" => Ok(GeneratedField::HostId),
                            "containerId" | "container_id" => Ok(GeneratedField::ContainerId),
                            "length" => Ok(GeneratedField::Length),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = IdMapping;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.IDMapping")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<IdMapping, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut host_id__ = None;
                let mut container_id__ = None;
                let mut length__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::HostId => {
                            if host_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("hostId"));
                            }
                            host_id__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::ContainerId => {
                            if container_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containerId"));
                            }
                            container_id__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::Length => {
                            if length__.is_some() {
                                return Err(serde::de::Error::duplicate_field("length"));
                            }
                            length__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(IdMapping {
                    host_id: host_id__.unwrap_or_default(),
                    container_id: container_id__.unwrap_or_default(),
                    length: length__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.IDMapping", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for Image {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.Image", len)?;
        if true {
            struct_ser.serialize_field("id", &self.id)?;
        }
        if true {
            struct_ser.serialize_field("repoTags", &self.repo_tags)?;
        }
        if true {
            struct_ser.serialize_field("repoDigests", &self.repo_digests)?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("size", ToString::to_string(&self.size).as_str())?;
        }
        if let Some(v) = self.uid.as_ref() {
            struct_ser.serialize_field("uid", v)?;
        }
        if true {
            struct_ser.serialize_field("username", &self.username)?;
        }
        if let Some(v) = self.spec.as_ref() {
            struct_ser.serialize_field("spec", v)?;
        }
        if true {
            struct_ser.serialize_field("pinned", &self.pinned)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for Image {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "id",
            "repo_tags",
            "repoTags",
            "repo_digests",
            "repoDigests",
            "size",
            "uid",
            "username",
            "spec",
            "pinned",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Id,
            RepoTags,
            RepoDigests,
            Size,
            Uid,
            Username,
            Spec,
            Pinned,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "id" => Ok(GeneratedField::Id),
                            "repoTags" | "repo_tags" => Ok(GeneratedField::RepoTags),
                            "repoDigests" | "repo_digests" => Ok(GeneratedField::RepoDigests),
                            "size" => Ok(GeneratedField::Size),
                            "uid" => Ok(GeneratedField::Uid),
                            "username" => Ok(GeneratedField::Username),
                            "spec" => Ok(GeneratedField::Spec),
                            "pinned" => Ok(GeneratedField::Pinned),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = Image;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.Image")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<Image, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut id__ = None;
                let mut repo_tags__ = None;
                let mut repo_digests__ = None;
                let mut size__ = None;
                let mut uid__ = None;
                let mut username__ = None;
                let mut spec__ = None;
                let mut pinned__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Id => {
                            if id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("id"));
                            }
                            id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::RepoTags => {
                            if repo_tags__.is_some() {
                                return Err(serde::de::Error::duplicate_field("repoTags"));
                            }
                            repo_tags__ = Some(map_.next_value()?);
                        }
                        GeneratedField::RepoDigests => {
                            if repo_digests__.is_some() {
                                return Err(serde::de::Error::duplicate_field("repoDigests"));
                            }
                            repo_digests__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Size => {
                            if size__.is_some() {
                                return Err(serde::de::Error::duplicate_field("size"));
                            }
                            size__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::Uid => {
                            if uid__.is_some() {
                                return Err(serde::de::Error::duplicate_field("uid"));
                            }
                            uid__ = map_.next_value()?;
                        }
                        GeneratedField::Username => {
                            if username__.is_some() {
                                return Err(serde::de::Error::duplicate_field("username"));
                            }
                            username__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Spec => {
                            if spec__.is_some() {
                                return Err(serde::de::Error::duplicate_field("spec"));
                            }
                            spec__ = map_.next_value()?;
                        }
                        GeneratedField::Pinned => {
                            if pinned__.is_some() {
                                return Err(serde::de::Error::duplicate_field("pinned"));
                            }
                            pinned__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(Image {
                    id: id__.unwrap_or_default(),
                    repo_tags: repo_tags__.unwrap_or_default(),
                    repo_digests: repo_digests__.unwrap_or_default(),
                    size: size__.unwrap_or_default(),
                    uid: uid__,
                    username: username__.unwrap_or_default(),
                    spec: spec__,
                    pinned: pinned__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.Image", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ImageFilter {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ImageFilter", len)?;
        if let Some(v) = self.image.as_ref() {
            struct_ser.serialize_field("image", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ImageFilter {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "image",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Image,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "image" => Ok(GeneratedField::Image),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ImageFilter;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ImageFilter")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ImageFilter, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut image__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Image => {
                            if image__.is_some() {
                                return Err(serde::de::Error::duplicate_field("image"));
                            }
                            image__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ImageFilter {
                    image: image__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ImageFilter", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ImageFsInfoRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let len = 0;
        let struct_ser = serializer.serialize_struct("runtime.v1.ImageFsInfoRequest", len)?;
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ImageFsInfoRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                            Ok(GeneratedField::__SkipField__)
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ImageFsInfoRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ImageFsInfoRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ImageFsInfoRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                while map_.next_key::<GeneratedField>()?.is_some() {
                    let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(ImageFsInfoRequest {
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ImageFsInfoRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ImageFsInfoResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ImageFsInfoResponse", len)?;
        if true {
            struct_ser.serialize_field("imageFilesystems", &self.image_filesystems)?;
        }
        if true {
            struct_ser.serialize_field("containerFilesystems", &self.container_filesystems)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ImageFsInfoResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "image_filesystems",
            "imageFilesystems",
            "container_filesystems",
            "containerFilesystems",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            ImageFilesystems,
            ContainerFilesystems,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "imageFilesystems" | "image_filesystems" => Ok(GeneratedField::ImageFilesystems),
                            "containerFilesystems" | "container_filesystems" => Ok(GeneratedField::ContainerFilesystems),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ImageFsInfoResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ImageFsInfoResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ImageFsInfoResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut image_filesystems__ = None;
                let mut container_filesystems__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::ImageFilesystems => {
                            if image_filesystems__.is_some() {
                                return Err(serde::de::Error::duplicate_field("imageFilesystems"));
                            }
                            image_filesystems__ = Some(map_.next_value()?);
                        }
                        GeneratedField::ContainerFilesystems => {
                            if container_filesystems__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containerFilesystems"));
                            }
                            container_filesystems__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ImageFsInfoResponse {
                    image_filesystems: image_filesystems__.unwrap_or_default(),
                    container_filesystems: container_filesystems__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ImageFsInfoResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ImageSpec {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ImageSpec", len)?;
        if true {
            struct_ser.serialize_field("image", &self.image)?;
        }
        if true {
            struct_ser.serialize_field("annotations", &self.annotations)?;
        }
        if true {
            struct_ser.serialize_field("userSpecifiedImage", &self.user_specified_image)?;
        }
        if true {
            struct_ser.serialize_field("runtimeHandler", &self.runtime_handler)?;
        }
        if true {
            struct_ser.serialize_field("imageRef", &self.image_ref)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ImageSpec {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "image",
            "annotations",
            "user_specified_image",
            "userSpecifiedImage",
            "runtime_handler",
            "runtimeHandler",
            "image_ref",
            "imageRef",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Image,
            Annotations,
            UserSpecifiedImage,
            RuntimeHandler,
            ImageRef,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "image" => Ok(GeneratedField::Image),
                            "annotations" => Ok(GeneratedField::Annotations),
                            "userSpecifiedImage" | "user_specified_image" => Ok(GeneratedField::UserSpecifiedImage),
                            "runtimeHandler" | "runtime_handler" => Ok(GeneratedField::RuntimeHandler),
                            "imageRef" | "image_ref" => Ok(GeneratedField::ImageRef),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ImageSpec;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ImageSpec")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ImageSpec, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut image__ = None;
                let mut annotations__ = None;
                let mut user_specified_image__ = None;
                let mut runtime_handler__ = None;
                let mut image_ref__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Image => {
                            if image__.is_some() {
                                return Err(serde::de::Error::duplicate_field("image"));
                            }
                            image__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Annotations => {
                            if annotations__.is_some() {
                                return Err(serde::de::Error::duplicate_field("annotations"));
                            }
                            annotations__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::UserSpecifiedImage => {
                            if user_specified_image__.is_some() {
                                return Err(serde::de::Error::duplicate_field("userSpecifiedImage"));
                            }
                            user_specified_image__ = Some(map_.next_value()?);
                        }
                        GeneratedField::RuntimeHandler => {
                            if runtime_handler__.is_some() {
                                return Err(serde::de::Error::duplicate_field("runtimeHandler"));
                            }
                            runtime_handler__ = Some(map_.next_value()?);
                        }
                        GeneratedField::ImageRef => {
                            if image_ref__.is_some() {
                                return Err(serde::de::Error::duplicate_field("imageRef"));
                            }
                            image_ref__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ImageSpec {
                    image: image__.unwrap_or_default(),
                    annotations: annotations__.unwrap_or_default(),
                    user_specified_image: user_specified_image__.unwrap_or_default(),
                    runtime_handler: runtime_handler__.unwrap_or_default(),
                    image_ref: image_ref__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ImageSpec", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ImageStatusRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ImageStatusRequest", len)?;
        if let Some(v) = self.image.as_ref() {
            struct_ser.serialize_field("image", v)?;
        }
        if true {
            struct_ser.serialize_field("verbose", &self.verbose)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ImageStatusRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "image",
            "verbose",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Image,
            Verbose,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "image" => Ok(GeneratedField::Image),
                            "verbose" => Ok(GeneratedField::Verbose),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ImageStatusRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ImageStatusRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ImageStatusRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut image__ = None;
                let mut verbose__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Image => {
                            if image__.is_some() {
                                return Err(serde::de::Error::duplicate_field("image"));
                            }
                            image__ = map_.next_value()?;
                        }
                        GeneratedField::Verbose => {
                            if verbose__.is_some() {
                                return Err(serde::de::Error::duplicate_field("verbose"));
                            }
                            verbose__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ImageStatusRequest {
                    image: image__,
                    verbose: verbose__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ImageStatusRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ImageStatusResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ImageStatusResponse", len)?;
        if let Some(v) = self.image.as_ref() {
            struct_ser.serialize_field("image", v)?;
        }
        if true {
            struct_ser.serialize_field("info", &self.info)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ImageStatusResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "image",
            "info",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Image,
            Info,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "image" => Ok(GeneratedField::Image),
                            "info" => Ok(GeneratedField::Info),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ImageStatusResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ImageStatusResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ImageStatusResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut image__ = None;
                let mut info__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Image => {
                            if image__.is_some() {
                                return Err(serde::de::Error::duplicate_field("image"));
                            }
                            image__ = map_.next_value()?;
                        }
                        GeneratedField::Info => {
                            if info__.is_some() {
                                return Err(serde::de::Error::duplicate_field("info"));
                            }
                            info__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ImageStatusResponse {
                    image: image__,
                    info: info__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ImageStatusResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for Int64Value {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.Int64Value", len)?;
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("value", ToString::to_string(&self.value).as_str())?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for Int64Value {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "value",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Value,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "value" => Ok(GeneratedField::Value),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = Int64Value;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.Int64Value")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<Int64Value, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut value__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Value => {
                            if value__.is_some() {
                                return Err(serde::de::Error::duplicate_field("value"));
                            }
                            value__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(Int64Value {
                    value: value__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.Int64Value", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for IoUsage {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.IoUsage", len)?;
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("timestamp", ToString::to_string(&self.timestamp).as_str())?;
        }
        if let Some(v) = self.psi.as_ref() {
            struct_ser.serialize_field("psi", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for IoUsage {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "timestamp",
            "psi",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Timestamp,
            Psi,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "timestamp" => Ok(GeneratedField::Timestamp),
                            "psi" => Ok(GeneratedField::Psi),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = IoUsage;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.IoUsage")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<IoUsage, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut timestamp__ = None;
                let mut psi__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Timestamp => {
                            if timestamp__.is_some() {
                                return Err(serde::de::Error::duplicate_field("timestamp"));
                            }
                            timestamp__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::Psi => {
                            if psi__.is_some() {
                                return Err(serde::de::Error::duplicate_field("psi"));
                            }
                            psi__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(IoUsage {
                    timestamp: timestamp__.unwrap_or_default(),
                    psi: psi__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.IoUsage", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for KeyValue {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.KeyValue", len)?;
        if true {
            struct_ser.serialize_field("key", &self.key)?;
        }
        if true {
            struct_ser.serialize_field("value", &self.value)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for KeyValue {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "key",
            "value",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Key,
            Value,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "key" => Ok(GeneratedField::Key),
                            "value" => Ok(GeneratedField::Value),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = KeyValue;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.KeyValue")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<KeyValue, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut key__ = None;
                let mut value__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Key => {
                            if key__.is_some() {
                                return Err(serde::de::Error::duplicate_field("key"));
                            }
                            key__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Value => {
                            if value__.is_some() {
                                return Err(serde::de::Error::duplicate_field("value"));
                            }
                            value__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(KeyValue {
                    key: key__.unwrap_or_default(),
                    value: value__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.KeyValue", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for LinuxContainerConfig {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.LinuxContainerConfig", len)?;
        if let Some(v) = self.resources.as_ref() {
            struct_ser.serialize_field("resources", v)?;
        }
        if let Some(v) = self.security_context.as_ref() {
            struct_ser.serialize_field("securityContext", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for LinuxContainerConfig {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "resources",
            "security_context",
            "securityContext",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Resources,
            SecurityContext,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "resources" => Ok(GeneratedField::Resources),
                            "securityContext" | "security_context" => Ok(GeneratedField::SecurityContext),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = LinuxContainerConfig;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.LinuxContainerConfig")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<LinuxContainerConfig, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut resources__ = None;
                let mut security_context__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Resources => {
                            if resources__.is_some() {
                                return Err(serde::de::Error::duplicate_field("resources"));
                            }
                            resources__ = map_.next_value()?;
                        }
                        GeneratedField::SecurityContext => {
                            if security_context__.is_some() {
                                return Err(serde::de::Error::duplicate_field("securityContext"));
                            }
                            security_context__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(LinuxContainerConfig {
                    resources: resources__,
                    security_context: security_context__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.LinuxContainerConfig", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for LinuxContainerResources {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.LinuxContainerResources", len)?;
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("cpuPeriod", ToString::to_string(&self.cpu_period).as_str())?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("cpuQuota", ToString::to_string(&self.cpu_quota).as_str())?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("cpuShares", ToString::to_string(&self.cpu_shares).as_str())?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("memoryLimitInBytes", ToString::to_string(&self.memory_limit_in_bytes).as_str())?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("oomScoreAdj", ToString::to_string(&self.oom_score_adj).as_str())?;
        }
        if true {
            struct_ser.serialize_field("cpusetCpus", &self.cpuset_cpus)?;
        }
        if true {
            struct_ser.serialize_field("cpusetMems", &self.cpuset_mems)?;
        }
        if true {
            struct_ser.serialize_field("hugepageLimits", &self.hugepage_limits)?;
        }
        if true {
            struct_ser.serialize_field("unified", &self.unified)?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("memorySwapLimitInBytes", ToString::to_string(&self.memory_swap_limit_in_bytes).as_str())?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for LinuxContainerResources {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "cpu_period",
            "cpuPeriod",
            "cpu_quota",
            "cpuQuota",
            "cpu_shares",
            "cpuShares",
            "memory_limit_in_bytes",
            "memoryLimitInBytes",
            "oom_score_adj",
            "oomScoreAdj",
            "cpuset_cpus",
            "cpusetCpus",
            "cpuset_mems",
            "cpusetMems",
            "hugepage_limits",
            "hugepageLimits",
            "unified",
            "memory_swap_limit_in_bytes",
            "memorySwapLimitInBytes",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            CpuPeriod,
            CpuQuota,
            CpuShares,
            MemoryLimitInBytes,
            OomScoreAdj,
            CpusetCpus,
            CpusetMems,
            HugepageLimits,
            Unified,
            MemorySwapLimitInBytes,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "cpuPeriod" | "cpu_period" => Ok(GeneratedField::CpuPeriod),
                            "cpuQuota" | "cpu_quota" => Ok(GeneratedField::CpuQuota),
                            "cpuShares" | "cpu_shares" => Ok(GeneratedField::CpuShares),
                            "memoryLimitInBytes" | "memory_limit_in_bytes" => Ok(GeneratedField::MemoryLimitInBytes),
                            "oomScoreAdj" | "oom_score_adj" => Ok(GeneratedField::OomScoreAdj),
                            "cpusetCpus" | "cpuset_cpus" => Ok(GeneratedField::CpusetCpus),
                            "cpusetMems" | "cpuset_mems" => Ok(GeneratedField::CpusetMems),
                            "hugepageLimits" | "hugepage_limits" => Ok(GeneratedField::HugepageLimits),
                            "unified" => Ok(GeneratedField::Unified),
                            "memorySwapLimitInBytes" | "memory_swap_limit_in_bytes" => Ok(GeneratedField::MemorySwapLimitInBytes),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = LinuxContainerResources;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.LinuxContainerResources")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<LinuxContainerResources, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut cpu_period__ = None;
                let mut cpu_quota__ = None;
                let mut cpu_shares__ = None;
                let mut memory_limit_in_bytes__ = None;
                let mut oom_score_adj__ = None;
                let mut cpuset_cpus__ = None;
                let mut cpuset_mems__ = None;
                let mut hugepage_limits__ = None;
                let mut unified__ = None;
                let mut memory_swap_limit_in_bytes__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::CpuPeriod => {
                            if cpu_period__.is_some() {
                                return Err(serde::de::Error::duplicate_field("cpuPeriod"));
                            }
                            cpu_period__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::CpuQuota => {
                            if cpu_quota__.is_some() {
                                return Err(serde::de::Error::duplicate_field("cpuQuota"));
                            }
                            cpu_quota__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::CpuShares => {
                            if cpu_shares__.is_some() {
                                return Err(serde::de::Error::duplicate_field("cpuShares"));
                            }
                            cpu_shares__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::MemoryLimitInBytes => {
                            if memory_limit_in_bytes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("memoryLimitInBytes"));
                            }
                            memory_limit_in_bytes__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::OomScoreAdj => {
                            if oom_score_adj__.is_some() {
                                return Err(serde::de::Error::duplicate_field("oomScoreAdj"));
                            }
                            oom_score_adj__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::CpusetCpus => {
                            if cpuset_cpus__.is_some() {
                                return Err(serde::de::Error::duplicate_field("cpusetCpus"));
                            }
                            cpuset_cpus__ = Some(map_.next_value()?);
                        }
                        GeneratedField::CpusetMems => {
                            if cpuset_mems__.is_some() {
                                return Err(serde::de::Error::duplicate_field("cpusetMems"));
                            }
                            cpuset_mems__ = Some(map_.next_value()?);
                        }
                        GeneratedField::HugepageLimits => {
                            if hugepage_limits__.is_some() {
                                return Err(serde::de::Error::duplicate_field("hugepageLimits"));
                            }
                            hugepage_limits__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Unified => {
                            if unified__.is_some() {
                                return Err(serde::de::Error::duplicate_field("unified"));
                            }
                            unified__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::MemorySwapLimitInBytes => {
                            if memory_swap_limit_in_bytes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("memorySwapLimitInBytes"));
                            }
                            memory_swap_limit_in_bytes__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(LinuxContainerResources {
                    cpu_period: cpu_period__.unwrap_or_default(),
                    cpu_quota: cpu_quota__.unwrap_or_default(),
                    cpu_shares: cpu_shares__.unwrap_or_default(),
                    memory_limit_in_bytes: memory_limit_in_bytes__.unwrap_or_default(),
                    oom_score_adj: oom_score_adj__.unwrap_or_default(),
                    cpuset_cpus: cpuset_cpus__.unwrap_or_default(),
                    cpuset_mems: cpuset_mems__.unwrap_or_default(),
                    hugepage_limits: hugepage_limits__.unwrap_or_default(),
                    unified: unified__.unwrap_or_default(),
                    memory_swap_limit_in_bytes: memory_swap_limit_in_bytes__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.LinuxContainerResources", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for LinuxContainerSecurityContext {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.LinuxContainerSecurityContext", len)?;
        if let Some(v) = self.capabilities.as_ref() {
            struct_ser.serialize_field("capabilities", v)?;
        }
        if true {
            struct_ser.serialize_field("privileged", &self.privileged)?;
        }
        if let Some(v) = self.namespace_options.as_ref() {
            struct_ser.serialize_field("namespaceOptions", v)?;
        }
        if let Some(v) = self.selinux_options.as_ref() {
            struct_ser.serialize_field("selinuxOptions", v)?;
        }
        if let Some(v) = self.run_as_user.as_ref() {
            struct_ser.serialize_field("runAsUser", v)?;
        }
        if let Some(v) = self.run_as_group.as_ref() {
            struct_ser.serialize_field("runAsGroup", v)?;
        }
        if true {
            struct_ser.serialize_field("runAsUsername", &self.run_as_username)?;
        }
        if true {
            struct_ser.serialize_field("readonlyRootfs", &self.readonly_rootfs)?;
        }
        if true {
            struct_ser.serialize_field("supplementalGroups", &self.supplemental_groups.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        }
        if true {
            let v = SupplementalGroupsPolicy::try_from(self.supplemental_groups_policy)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.supplemental_groups_policy)))?;
            struct_ser.serialize_field("supplementalGroupsPolicy", &v)?;
        }
        if true {
            struct_ser.serialize_field("noNewPrivs", &self.no_new_privs)?;
        }
        if true {
            struct_ser.serialize_field("maskedPaths", &self.masked_paths)?;
        }
        if true {
            struct_ser.serialize_field("readonlyPaths", &self.readonly_paths)?;
        }
        if let Some(v) = self.seccomp.as_ref() {
            struct_ser.serialize_field("seccomp", v)?;
        }
        if let Some(v) = self.apparmor.as_ref() {
            struct_ser.serialize_field("apparmor", v)?;
        }
        if true {
            struct_ser.serialize_field("apparmorProfile", &self.apparmor_profile)?;
        }
        if true {
            struct_ser.serialize_field("seccompProfilePath", &self.seccomp_profile_path)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for LinuxContainerSecurityContext {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "capabilities",
            "privileged",
            "namespace_options",
            "namespaceOptions",
            "selinux_options",
            "selinuxOptions",
            "run_as_user",
            "runAsUser",
            "run_as_group",
            "runAsGroup",
            "run_as_username",
            "runAsUsername",
            "readonly_rootfs",
            "readonlyRootfs",
            "supplemental_groups",
            "supplementalGroups",
            "supplemental_groups_policy",
            "supplementalGroupsPolicy",
            "no_new_privs",
            "noNewPrivs",
            "masked_paths",
            "maskedPaths",
            "readonly_paths",
            "readonlyPaths",
            "seccomp",
            "apparmor",
            "apparmor_profile",
            "apparmorProfile",
            "seccomp_profile_path",
            "seccompProfilePath",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Capabilities,
            Privileged,
            NamespaceOptions,
            SelinuxOptions,
            RunAsUser,
            RunAsGroup,
            RunAsUsername,
            ReadonlyRootfs,
            SupplementalGroups,
            SupplementalGroupsPolicy,
            NoNewPrivs,
            MaskedPaths,
            ReadonlyPaths,
            Seccomp,
            Apparmor,
            ApparmorProfile,
            SeccompProfilePath,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "capabilities" => Ok(GeneratedField::Capabilities),
                            "privileged" => Ok(GeneratedField::Privileged),
                            "namespaceOptions" | "namespace_options" => Ok(GeneratedField::NamespaceOptions),
                            "selinuxOptions" | "selinux_options" => Ok(GeneratedField::SelinuxOptions),
                            "runAsUser" | "run_as_user" => Ok(GeneratedField::RunAsUser),
                            "runAsGroup" | "run_as_group" => Ok(GeneratedField::RunAsGroup),
                            "runAsUsername" | "run_as_username" => Ok(GeneratedField::RunAsUsername),
                            "readonlyRootfs" | "readonly_rootfs" => Ok(GeneratedField::ReadonlyRootfs),
                            "supplementalGroups" | "supplemental_groups" => Ok(GeneratedField::SupplementalGroups),
                            "supplementalGroupsPolicy" | "supplemental_groups_policy" => Ok(GeneratedField::SupplementalGroupsPolicy),
                            "noNewPrivs" | "no_new_privs" => Ok(GeneratedField::NoNewPrivs),
                            "maskedPaths" | "masked_paths" => Ok(GeneratedField::MaskedPaths),
                            "readonlyPaths" | "readonly_paths" => Ok(GeneratedField::ReadonlyPaths),
                            "seccomp" => Ok(GeneratedField::Seccomp),
                            "apparmor" => Ok(GeneratedField::Apparmor),
                            "apparmorProfile" | "apparmor_profile" => Ok(GeneratedField::ApparmorProfile),
                            "seccompProfilePath" | "seccomp_profile_path" => Ok(GeneratedField::SeccompProfilePath),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = LinuxContainerSecurityContext;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.LinuxContainerSecurityContext")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<LinuxContainerSecurityContext, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut capabilities__ = None;
                let mut privileged__ = None;
                let mut namespace_options__ = None;
                let mut selinux_options__ = None;
                let mut run_as_user__ = None;
                let mut run_as_group__ = None;
                let mut run_as_username__ = None;
                let mut readonly_rootfs__ = None;
                let mut supplemental_groups__ = None;
                let mut supplemental_groups_policy__ = None;
                let mut no_new_privs__ = None;
                let mut masked_paths__ = None;
                let mut readonly_paths__ = None;
                let mut seccomp__ = None;
                let mut apparmor__ = None;
                let mut apparmor_profile__ = None;
                let mut seccomp_profile_path__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Capabilities => {
                            if capabilities__.is_some() {
                                return Err(serde::de::Error::duplicate_field("capabilities"));
                            }
                            capabilities__ = map_.next_value()?;
                        }
                        GeneratedField::Privileged => {
                            if privileged__.is_some() {
                                return Err(serde::de::Error::duplicate_field("privileged"));
                            }
                            privileged__ = Some(map_.next_value()?);
                        }
                        GeneratedField::NamespaceOptions => {
                            if namespace_options__.is_some() {
                                return Err(serde::de::Error::duplicate_field("namespaceOptions"));
                            }
                            namespace_options__ = map_.next_value()?;
                        }
                        GeneratedField::SelinuxOptions => {
                            if selinux_options__.is_some() {
                                return Err(serde::de::Error::duplicate_field("selinuxOptions"));
                            }
                            selinux_options__ = map_.next_value()?;
                        }
                        GeneratedField::RunAsUser => {
                            if run_as_user__.is_some() {
                                return Err(serde::de::Error::duplicate_field("runAsUser"));
                            }
                            run_as_user__ = map_.next_value()?;
                        }
                        GeneratedField::RunAsGroup => {
                            if run_as_group__.is_some() {
                                return Err(serde::de::Error::duplicate_field("runAsGroup"));
                            }
                            run_as_group__ = map_.next_value()?;
                        }
                        GeneratedField::RunAsUsername => {
                            if run_as_username__.is_some() {
                                return Err(serde::de::Error::duplicate_field("runAsUsername"));
                            }
                            run_as_username__ = Some(map_.next_value()?);
                        }
                        GeneratedField::ReadonlyRootfs => {
                            if readonly_rootfs__.is_some() {
                                return Err(serde::de::Error::duplicate_field("readonlyRootfs"));
                            }
                            readonly_rootfs__ = Some(map_.next_value()?);
                        }
                        GeneratedField::SupplementalGroups => {
                            if supplemental_groups__.is_some() {
                                return Err(serde::de::Error::duplicate_field("supplementalGroups"));
                            }
                            supplemental_groups__ = 
                                Some(map_.next_value::<Vec<::pbjson::private::NumberDeserialize<_>>>()?
                                    .into_iter().map(|x| x.0).collect())
                            ;
                        }
                        GeneratedField::SupplementalGroupsPolicy => {
                            if supplemental_groups_policy__.is_some() {
                                return Err(serde::de::Error::duplicate_field("supplementalGroupsPolicy"));
                            }
                            supplemental_groups_policy__ = Some(map_.next_value::<SupplementalGroupsPolicy>()? as i32);
                        }
                        GeneratedField::NoNewPrivs => {
                            if no_new_privs__.is_some() {
                                return Err(serde::de::Error::duplicate_field("noNewPrivs"));
                            }
                            no_new_privs__ = Some(map_.next_value()?);
                        }
                        GeneratedField::MaskedPaths => {
                            if masked_paths__.is_some() {
                                return Err(serde::de::Error::duplicate_field("maskedPaths"));
                            }
                            masked_paths__ = Some(map_.next_value()?);
                        }
                        GeneratedField::ReadonlyPaths => {
                            if readonly_paths__.is_some() {
                                return Err(serde::de::Error::duplicate_field("readonlyPaths"));
                            }
                            readonly_paths__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Seccomp => {
                            if seccomp__.is_some() {
                                return Err(serde::de::Error::duplicate_field("seccomp"));
                            }
                            seccomp__ = map_.next_value()?;
                        }
                        GeneratedField::Apparmor => {
                            if apparmor__.is_some() {
                                return Err(serde::de::Error::duplicate_field("apparmor"));
                            }
                            apparmor__ = map_.next_value()?;
                        }
                        GeneratedField::ApparmorProfile => {
                            if apparmor_profile__.is_some() {
                                return Err(serde::de::Error::duplicate_field("apparmorProfile"));
                            }
                            apparmor_profile__ = Some(map_.next_value()?);
                        }
                        GeneratedField::SeccompProfilePath => {
                            if seccomp_profile_path__.is_some() {
                                return Err(serde::de::Error::duplicate_field("seccompProfilePath"));
                            }
                            seccomp_profile_path__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(LinuxContainerSecurityContext {
                    capabilities: capabilities__,
                    privileged: privileged__.unwrap_or_default(),
                    namespace_options: namespace_options__,
                    selinux_options: selinux_options__,
                    run_as_user: run_as_user__,
                    run_as_group: run_as_group__,
                    run_as_username: run_as_username__.unwrap_or_default(),
                    readonly_rootfs: readonly_rootfs__.unwrap_or_default(),
                    supplemental_groups: supplemental_groups__.unwrap_or_default(),
                    supplemental_groups_policy: supplemental_groups_policy__.unwrap_or_default(),
                    no_new_privs: no_new_privs__.unwrap_or_default(),
                    masked_paths: masked_paths__.unwrap_or_default(),
                    readonly_paths: readonly_paths__.unwrap_or_default(),
                    seccomp: seccomp__,
                    apparmor: apparmor__,
                    apparmor_profile: apparmor_profile__.unwrap_or_default(),
                    seccomp_profile_path: seccomp_profile_path__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.LinuxContainerSecurityContext", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for LinuxContainerUser {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.LinuxContainerUser", len)?;
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("uid", ToString::to_string(&self.uid).as_str())?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("gid", ToString::to_string(&self.gid).as_str())?;
        }
        if true {
            struct_ser.serialize_field("supplementalGroups", &self.supplemental_groups.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for LinuxContainerUser {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "uid",
            "gid",
            "supplemental_groups",
            "supplementalGroups",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Uid,
            Gid,
            SupplementalGroups,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "uid" => Ok(GeneratedField::Uid),
                            "gid" => Ok(GeneratedField::Gid),
                            "supplementalGroups" | "supplemental_groups" => Ok(GeneratedField::SupplementalGroups),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = LinuxContainerUser;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.LinuxContainerUser")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<LinuxContainerUser, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut uid__ = None;
                let mut gid__ = None;
                let mut supplemental_groups__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Uid => {
                            if uid__.is_some() {
                                return Err(serde::de::Error::duplicate_field("uid"));
                            }
                            uid__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::Gid => {
                            if gid__.is_some() {
                                return Err(serde::de::Error::duplicate_field("gid"));
                            }
                            gid__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::SupplementalGroups => {
                            if supplemental_groups__.is_some() {
                                return Err(serde::de::Error::duplicate_field("supplementalGroups"));
                            }
                            supplemental_groups__ = 
                                Some(map_.next_value::<Vec<::pbjson::private::NumberDeserialize<_>>>()?
                                    .into_iter().map(|x| x.0).collect())
                            ;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(LinuxContainerUser {
                    uid: uid__.unwrap_or_default(),
                    gid: gid__.unwrap_or_default(),
                    supplemental_groups: supplemental_groups__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.LinuxContainerUser", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for LinuxPodSandboxConfig {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.LinuxPodSandboxConfig", len)?;
        if true {
            struct_ser.serialize_field("cgroupParent", &self.cgroup_parent)?;
        }
        if let Some(v) = self.security_context.as_ref() {
            struct_ser.serialize_field("securityContext", v)?;
        }
        if true {
            struct_ser.serialize_field("sysctls", &self.sysctls)?;
        }
        if let Some(v) = self.overhead.as_ref() {
            struct_ser.serialize_field("overhead", v)?;
        }
        if let Some(v) = self.resources.as_ref() {
            struct_ser.serialize_field("resources", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for LinuxPodSandboxConfig {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "cgroup_parent",
            "cgroupParent",
            "security_context",
            "securityContext",
            "sysctls",
            "overhead",
            "resources",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            CgroupParent,
            SecurityContext,
            Sysctls,
            Overhead,
            Resources,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "cgroupParent" | "cgroup_parent" => Ok(GeneratedField::CgroupParent),
                            "securityContext" | "security_context" => Ok(GeneratedField::SecurityContext),
                            "sysctls" => Ok(GeneratedField::Sysctls),
                            "overhead" => Ok(GeneratedField::Overhead),
                            "resources" => Ok(GeneratedField::Resources),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = LinuxPodSandboxConfig;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.LinuxPodSandboxConfig")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<LinuxPodSandboxConfig, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut cgroup_parent__ = None;
                let mut security_context__ = None;
                let mut sysctls__ = None;
                let mut overhead__ = None;
                let mut resources__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::CgroupParent => {
                            if cgroup_parent__.is_some() {
                                return Err(serde::de::Error::duplicate_field("cgroupParent"));
                            }
                            cgroup_parent__ = Some(map_.next_value()?);
                        }
                        GeneratedField::SecurityContext => {
                            if security_context__.is_some() {
                                return Err(serde::de::Error::duplicate_field("securityContext"));
                            }
                            security_context__ = map_.next_value()?;
                        }
                        GeneratedField::Sysctls => {
                            if sysctls__.is_some() {
                                return Err(serde::de::Error::duplicate_field("sysctls"));
                            }
                            sysctls__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::Overhead => {
                            if overhead__.is_some() {
                                return Err(serde::de::Error::duplicate_field("overhead"));
                            }
                            overhead__ = map_.next_value()?;
                        }
                        GeneratedField::Resources => {
                            if resources__.is_some() {
                                return Err(serde::de::Error::duplicate_field("resources"));
                            }
                            resources__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(LinuxPodSandboxConfig {
                    cgroup_parent: cgroup_parent__.unwrap_or_default(),
                    security_context: security_context__,
                    sysctls: sysctls__.unwrap_or_default(),
                    overhead: overhead__,
                    resources: resources__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.LinuxPodSandboxConfig", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for LinuxPodSandboxStats {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.LinuxPodSandboxStats", len)?;
        if let Some(v) = self.cpu.as_ref() {
            struct_ser.serialize_field("cpu", v)?;
        }
        if let Some(v) = self.memory.as_ref() {
            struct_ser.serialize_field("memory", v)?;
        }
        if let Some(v) = self.network.as_ref() {
            struct_ser.serialize_field("network", v)?;
        }
        if let Some(v) = self.process.as_ref() {
            struct_ser.serialize_field("process", v)?;
        }
        if true {
            struct_ser.serialize_field("containers", &self.containers)?;
        }
        if let Some(v) = self.io.as_ref() {
            struct_ser.serialize_field("io", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for LinuxPodSandboxStats {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "cpu",
            "memory",
            "network",
            "process",
            "containers",
            "io",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Cpu,
            Memory,
            Network,
            Process,
            Containers,
            Io,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "cpu" => Ok(GeneratedField::Cpu),
                            "memory" => Ok(GeneratedField::Memory),
                            "network" => Ok(GeneratedField::Network),
                            "process" => Ok(GeneratedField::Process),
                            "containers" => Ok(GeneratedField::Containers),
                            "io" => Ok(GeneratedField::Io),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = LinuxPodSandboxStats;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.LinuxPodSandboxStats")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<LinuxPodSandboxStats, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut cpu__ = None;
                let mut memory__ = None;
                let mut network__ = None;
                let mut process__ = None;
                let mut containers__ = None;
                let mut io__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Cpu => {
                            if cpu__.is_some() {
                                return Err(serde::de::Error::duplicate_field("cpu"));
                            }
                            cpu__ = map_.next_value()?;
                        }
                        GeneratedField::Memory => {
                            if memory__.is_some() {
                                return Err(serde::de::Error::duplicate_field("memory"));
                            }
                            memory__ = map_.next_value()?;
                        }
                        GeneratedField::Network => {
                            if network__.is_some() {
                                return Err(serde::de::Error::duplicate_field("network"));
                            }
                            network__ = map_.next_value()?;
                        }
                        GeneratedField::Process => {
                            if process__.is_some() {
                                return Err(serde::de::Error::duplicate_field("process"));
                            }
                            process__ = map_.next_value()?;
                        }
                        GeneratedField::Containers => {
                            if containers__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containers"));
                            }
                            containers__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Io => {
                            if io__.is_some() {
                                return Err(serde::de::Error::duplicate_field("io"));
                            }
                            io__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(LinuxPodSandboxStats {
                    cpu: cpu__,
                    memory: memory__,
                    network: network__,
                    process: process__,
                    containers: containers__.unwrap_or_default(),
                    io: io__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.LinuxPodSandboxStats", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for LinuxPodSandboxStatus {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.LinuxPodSandboxStatus", len)?;
        if let Some(v) = self.namespaces.as_ref() {
            struct_ser.serialize_field("namespaces", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for LinuxPodSandboxStatus {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "namespaces",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Namespaces,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "namespaces" => Ok(GeneratedField::Namespaces),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = LinuxPodSandboxStatus;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.LinuxPodSandboxStatus")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<LinuxPodSandboxStatus, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut namespaces__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Namespaces => {
                            if namespaces__.is_some() {
                                return Err(serde::de::Error::duplicate_field("namespaces"));
                            }
                            namespaces__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(LinuxPodSandboxStatus {
                    namespaces: namespaces__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.LinuxPodSandboxStatus", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for LinuxRuntimeConfiguration {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.LinuxRuntimeConfiguration", len)?;
        if true {
            let v = CgroupDriver::try_from(self.cgroup_driver)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.cgroup_driver)))?;
            struct_ser.serialize_field("cgroupDriver", &v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for LinuxRuntimeConfiguration {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "cgroup_driver",
            "cgroupDriver",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            CgroupDriver,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "cgroupDriver" | "cgroup_driver" => Ok(GeneratedField::CgroupDriver),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = LinuxRuntimeConfiguration;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.LinuxRuntimeConfiguration")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<LinuxRuntimeConfiguration, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut cgroup_driver__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::CgroupDriver => {
                            if cgroup_driver__.is_some() {
                                return Err(serde::de::Error::duplicate_field("cgroupDriver"));
                            }
                            cgroup_driver__ = Some(map_.next_value::<CgroupDriver>()? as i32);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(LinuxRuntimeConfiguration {
                    cgroup_driver: cgroup_driver__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.LinuxRuntimeConfiguration", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for LinuxSandboxSecurityContext {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.LinuxSandboxSecurityContext", len)?;
        if let Some(v) = self.namespace_options.as_ref() {
            struct_ser.serialize_field("namespaceOptions", v)?;
        }
        if let Some(v) = self.selinux_options.as_ref() {
            struct_ser.serialize_field("selinuxOptions", v)?;
        }
        if let Some(v) = self.run_as_user.as_ref() {
            struct_ser.serialize_field("runAsUser", v)?;
        }
        if let Some(v) = self.run_as_group.as_ref() {
            struct_ser.serialize_field("runAsGroup", v)?;
        }
        if true {
            struct_ser.serialize_field("readonlyRootfs", &self.readonly_rootfs)?;
        }
        if true {
            struct_ser.serialize_field("supplementalGroups", &self.supplemental_groups.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        }
        if true {
            let v = SupplementalGroupsPolicy::try_from(self.supplemental_groups_policy)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.supplemental_groups_policy)))?;
            struct_ser.serialize_field("supplementalGroupsPolicy", &v)?;
        }
        if true {
            struct_ser.serialize_field("privileged", &self.privileged)?;
        }
        if let Some(v) = self.seccomp.as_ref() {
            struct_ser.serialize_field("seccomp", v)?;
        }
        if let Some(v) = self.apparmor.as_ref() {
            struct_ser.serialize_field("apparmor", v)?;
        }
        if true {
            struct_ser.serialize_field("seccompProfilePath", &self.seccomp_profile_path)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for LinuxSandboxSecurityContext {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "namespace_options",
            "namespaceOptions",
            "selinux_options",
            "selinuxOptions",
            "run_as_user",
            "runAsUser",
            "run_as_group",
            "runAsGroup",
            "readonly_rootfs",
            "readonlyRootfs",
            "supplemental_groups",
            "supplementalGroups",
            "supplemental_groups_policy",
            "supplementalGroupsPolicy",
            "privileged",
            "seccomp",
            "apparmor",
            "seccomp_profile_path",
            "seccompProfilePath",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            NamespaceOptions,
            SelinuxOptions,
            RunAsUser,
            RunAsGroup,
            ReadonlyRootfs,
            SupplementalGroups,
            SupplementalGroupsPolicy,
            Privileged,
            Seccomp,
            Apparmor,
            SeccompProfilePath,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "namespaceOptions" | "namespace_options" => Ok(GeneratedField::NamespaceOptions),
                            "selinuxOptions" | "selinux_options" => Ok(GeneratedField::SelinuxOptions),
                            "runAsUser" | "run_as_user" => Ok(GeneratedField::RunAsUser),
                            "runAsGroup" | "run_as_group" => Ok(GeneratedField::RunAsGroup),
                            "readonlyRootfs" | "readonly_rootfs" => Ok(GeneratedField::ReadonlyRootfs),
                            "supplementalGroups" | "supplemental_groups" => Ok(GeneratedField::SupplementalGroups),
                            "supplementalGroupsPolicy" | "supplemental_groups_policy" => Ok(GeneratedField::SupplementalGroupsPolicy),
                            "privileged" => Ok(GeneratedField::Privileged),
                            "seccomp" => Ok(GeneratedField::Seccomp),
                            "apparmor" => Ok(GeneratedField::Apparmor),
                            "seccompProfilePath" | "seccomp_profile_path" => Ok(GeneratedField::SeccompProfilePath),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = LinuxSandboxSecurityContext;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.LinuxSandboxSecurityContext")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<LinuxSandboxSecurityContext, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut namespace_options__ = None;
                let mut selinux_options__ = None;
                let mut run_as_user__ = None;
                let mut run_as_group__ = None;
                let mut readonly_rootfs__ = None;
                let mut supplemental_groups__ = None;
                let mut supplemental_groups_policy__ = None;
                let mut privileged__ = None;
                let mut seccomp__ = None;
                let mut apparmor__ = None;
                let mut seccomp_profile_path__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::NamespaceOptions => {
                            if namespace_options__.is_some() {
                                return Err(serde::de::Error::duplicate_field("namespaceOptions"));
                            }
                            namespace_options__ = map_.next_value()?;
                        }
                        GeneratedField::SelinuxOptions => {
                            if selinux_options__.is_some() {
                                return Err(serde::de::Error::duplicate_field("selinuxOptions"));
                            }
                            selinux_options__ = map_.next_value()?;
                        }
                        GeneratedField::RunAsUser => {
                            if run_as_user__.is_some() {
                                return Err(serde::de::Error::duplicate_field("runAsUser"));
                            }
                            run_as_user__ = map_.next_value()?;
                        }
                        GeneratedField::RunAsGroup => {
                            if run_as_group__.is_some() {
                                return Err(serde::de::Error::duplicate_field("runAsGroup"));
                            }
                            run_as_group__ = map_.next_value()?;
                        }
                        GeneratedField::ReadonlyRootfs => {
                            if readonly_rootfs__.is_some() {
                                return Err(serde::de::Error::duplicate_field("readonlyRootfs"));
                            }
                            readonly_rootfs__ = Some(map_.next_value()?);
                        }
                        GeneratedField::SupplementalGroups => {
                            if supplemental_groups__.is_some() {
                                return Err(serde::de::Error::duplicate_field("supplementalGroups"));
                            }
                            supplemental_groups__ = 
                                Some(map_.next_value::<Vec<::pbjson::private::NumberDeserialize<_>>>()?
                                    .into_iter().map(|x| x.0).collect())
                            ;
                        }
                        GeneratedField::SupplementalGroupsPolicy => {
                            if supplemental_groups_policy__.is_some() {
                                return Err(serde::de::Error::duplicate_field("supplementalGroupsPolicy"));
                            }
                            supplemental_groups_policy__ = Some(map_.next_value::<SupplementalGroupsPolicy>()? as i32);
                        }
                        GeneratedField::Privileged => {
                            if privileged__.is_some() {
                                return Err(serde::de::Error::duplicate_field("privileged"));
                            }
                            privileged__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Seccomp => {
                            if seccomp__.is_some() {
                                return Err(serde::de::Error::duplicate_field("seccomp"));
                            }
                            seccomp__ = map_.next_value()?;
                        }
                        GeneratedField::Apparmor => {
                            if apparmor__.is_some() {
                                return Err(serde::de::Error::duplicate_field("apparmor"));
                            }
                            apparmor__ = map_.next_value()?;
                        }
                        GeneratedField::SeccompProfilePath => {
                            if seccomp_profile_path__.is_some() {
                                return Err(serde::de::Error::duplicate_field("seccompProfilePath"));
                            }
                            seccomp_profile_path__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(LinuxSandboxSecurityContext {
                    namespace_options: namespace_options__,
                    selinux_options: selinux_options__,
                    run_as_user: run_as_user__,
                    run_as_group: run_as_group__,
                    readonly_rootfs: readonly_rootfs__.unwrap_or_default(),
                    supplemental_groups: supplemental_groups__.unwrap_or_default(),
                    supplemental_groups_policy: supplemental_groups_policy__.unwrap_or_default(),
                    privileged: privileged__.unwrap_or_default(),
                    seccomp: seccomp__,
                    apparmor: apparmor__,
                    seccomp_profile_path: seccomp_profile_path__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.LinuxSandboxSecurityContext", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ListContainerStatsRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ListContainerStatsRequest", len)?;
        if let Some(v) = self.filter.as_ref() {
            struct_ser.serialize_field("filter", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ListContainerStatsRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "filter",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Filter,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "filter" => Ok(GeneratedField::Filter),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ListContainerStatsRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ListContainerStatsRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ListContainerStatsRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut filter__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Filter => {
                            if filter__.is_some() {
                                return Err(serde::de::Error::duplicate_field("filter"));
                            }
                            filter__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ListContainerStatsRequest {
                    filter: filter__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ListContainerStatsRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ListContainerStatsResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ListContainerStatsResponse", len)?;
        if true {
            struct_ser.serialize_field("stats", &self.stats)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ListContainerStatsResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "stats",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Stats,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "stats" => Ok(GeneratedField::Stats),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ListContainerStatsResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ListContainerStatsResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ListContainerStatsResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut stats__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Stats => {
                            if stats__.is_some() {
                                return Err(serde::de::Error::duplicate_field("stats"));
                            }
                            stats__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ListContainerStatsResponse {
                    stats: stats__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ListContainerStatsResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ListContainersRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ListContainersRequest", len)?;
        if let Some(v) = self.filter.as_ref() {
            struct_ser.serialize_field("filter", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ListContainersRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "filter",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Filter,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "filter" => Ok(GeneratedField::Filter),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ListContainersRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ListContainersRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ListContainersRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut filter__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Filter => {
                            if filter__.is_some() {
                                return Err(serde::de::Error::duplicate_field("filter"));
                            }
                            filter__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ListContainersRequest {
                    filter: filter__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ListContainersRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ListContainersResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ListContainersResponse", len)?;
        if true {
            struct_ser.serialize_field("containers", &self.containers)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ListContainersResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "containers",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Containers,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "containers" => Ok(GeneratedField::Containers),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ListContainersResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ListContainersResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ListContainersResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut containers__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Containers => {
                            if containers__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containers"));
                            }
                            containers__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ListContainersResponse {
                    containers: containers__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ListContainersResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ListImagesRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ListImagesRequest", len)?;
        if let Some(v) = self.filter.as_ref() {
            struct_ser.serialize_field("filter", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ListImagesRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "filter",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Filter,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "filter" => Ok(GeneratedField::Filter),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ListImagesRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ListImagesRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ListImagesRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut filter__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Filter => {
                            if filter__.is_some() {
                                return Err(serde::de::Error::duplicate_field("filter"));
                            }
                            filter__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ListImagesRequest {
                    filter: filter__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ListImagesRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ListImagesResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ListImagesResponse", len)?;
        if true {
            struct_ser.serialize_field("images", &self.images)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ListImagesResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "images",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Images,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "images" => Ok(GeneratedField::Images),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ListImagesResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ListImagesResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ListImagesResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut images__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Images => {
                            if images__.is_some() {
                                return Err(serde::de::Error::duplicate_field("images"));
                            }
                            images__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ListImagesResponse {
                    images: images__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ListImagesResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ListMetricDescriptorsRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let len = 0;
        let struct_ser = serializer.serialize_struct("runtime.v1.ListMetricDescriptorsRequest", len)?;
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ListMetricDescriptorsRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                            Ok(GeneratedField::__SkipField__)
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ListMetricDescriptorsRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ListMetricDescriptorsRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ListMetricDescriptorsRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                while map_.next_key::<GeneratedField>()?.is_some() {
                    let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(ListMetricDescriptorsRequest {
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ListMetricDescriptorsRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ListMetricDescriptorsResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ListMetricDescriptorsResponse", len)?;
        if true {
            struct_ser.serialize_field("descriptors", &self.descriptors)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ListMetricDescriptorsResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "descriptors",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Descriptors,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "descriptors" => Ok(GeneratedField::Descriptors),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ListMetricDescriptorsResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ListMetricDescriptorsResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ListMetricDescriptorsResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut descriptors__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Descriptors => {
                            if descriptors__.is_some() {
                                return Err(serde::de::Error::duplicate_field("descriptors"));
                            }
                            descriptors__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ListMetricDescriptorsResponse {
                    descriptors: descriptors__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ListMetricDescriptorsResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ListPodSandboxMetricsRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let len = 0;
        let struct_ser = serializer.serialize_struct("runtime.v1.ListPodSandboxMetricsRequest", len)?;
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ListPodSandboxMetricsRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                            Ok(GeneratedField::__SkipField__)
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ListPodSandboxMetricsRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ListPodSandboxMetricsRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ListPodSandboxMetricsRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                while map_.next_key::<GeneratedField>()?.is_some() {
                    let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(ListPodSandboxMetricsRequest {
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ListPodSandboxMetricsRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ListPodSandboxMetricsResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ListPodSandboxMetricsResponse", len)?;
        if true {
            struct_ser.serialize_field("podMetrics", &self.pod_metrics)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ListPodSandboxMetricsResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "pod_metrics",
            "podMetrics",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            PodMetrics,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "podMetrics" | "pod_metrics" => Ok(GeneratedField::PodMetrics),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ListPodSandboxMetricsResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ListPodSandboxMetricsResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ListPodSandboxMetricsResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut pod_metrics__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::PodMetrics => {
                            if pod_metrics__.is_some() {
                                return Err(serde::de::Error::duplicate_field("podMetrics"));
                            }
                            pod_metrics__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ListPodSandboxMetricsResponse {
                    pod_metrics: pod_metrics__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ListPodSandboxMetricsResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ListPodSandboxRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ListPodSandboxRequest", len)?;
        if let Some(v) = self.filter.as_ref() {
            struct_ser.serialize_field("filter", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ListPodSandboxRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "filter",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Filter,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "filter" => Ok(GeneratedField::Filter),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ListPodSandboxRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ListPodSandboxRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ListPodSandboxRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut filter__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Filter => {
                            if filter__.is_some() {
                                return Err(serde::de::Error::duplicate_field("filter"));
                            }
                            filter__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ListPodSandboxRequest {
                    filter: filter__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ListPodSandboxRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ListPodSandboxResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ListPodSandboxResponse", len)?;
        if true {
            struct_ser.serialize_field("items", &self.items)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ListPodSandboxResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "items",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Items,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "items" => Ok(GeneratedField::Items),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ListPodSandboxResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ListPodSandboxResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ListPodSandboxResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut items__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Items => {
                            if items__.is_some() {
                                return Err(serde::de::Error::duplicate_field("items"));
                            }
                            items__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ListPodSandboxResponse {
                    items: items__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ListPodSandboxResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ListPodSandboxStatsRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ListPodSandboxStatsRequest", len)?;
        if let Some(v) = self.filter.as_ref() {
            struct_ser.serialize_field("filter", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ListPodSandboxStatsRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "filter",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Filter,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "filter" => Ok(GeneratedField::Filter),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ListPodSandboxStatsRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ListPodSandboxStatsRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ListPodSandboxStatsRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut filter__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Filter => {
                            if filter__.is_some() {
                                return Err(serde::de::Error::duplicate_field("filter"));
                            }
                            filter__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ListPodSandboxStatsRequest {
                    filter: filter__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ListPodSandboxStatsRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ListPodSandboxStatsResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ListPodSandboxStatsResponse", len)?;
        if true {
            struct_ser.serialize_field("stats", &self.stats)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ListPodSandboxStatsResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "stats",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Stats,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "stats" => Ok(GeneratedField::Stats),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ListPodSandboxStatsResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ListPodSandboxStatsResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ListPodSandboxStatsResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut stats__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Stats => {
                            if stats__.is_some() {
                                return Err(serde::de::Error::duplicate_field("stats"));
                            }
                            stats__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ListPodSandboxStatsResponse {
                    stats: stats__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ListPodSandboxStatsResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for MemoryUsage {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.MemoryUsage", len)?;
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("timestamp", ToString::to_string(&self.timestamp).as_str())?;
        }
        if let Some(v) = self.working_set_bytes.as_ref() {
            struct_ser.serialize_field("workingSetBytes", v)?;
        }
        if let Some(v) = self.available_bytes.as_ref() {
            struct_ser.serialize_field("availableBytes", v)?;
        }
        if let Some(v) = self.usage_bytes.as_ref() {
            struct_ser.serialize_field("usageBytes", v)?;
        }
        if let Some(v) = self.rss_bytes.as_ref() {
            struct_ser.serialize_field("rssBytes", v)?;
        }
        if let Some(v) = self.page_faults.as_ref() {
            struct_ser.serialize_field("pageFaults", v)?;
        }
        if let Some(v) = self.major_page_faults.as_ref() {
            struct_ser.serialize_field("majorPageFaults", v)?;
        }
        if let Some(v) = self.psi.as_ref() {
            struct_ser.serialize_field("psi", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for MemoryUsage {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "timestamp",
            "working_set_bytes",
            "workingSetBytes",
            "available_bytes",
            "availableBytes",
            "usage_bytes",
            "usageBytes",
            "rss_bytes",
            "rssBytes",
            "page_faults",
            "pageFaults",
            "major_page_faults",
            "majorPageFaults",
            "psi",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Timestamp,
            WorkingSetBytes,
            AvailableBytes,
            UsageBytes,
            RssBytes,
            PageFaults,
            MajorPageFaults,
            Psi,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "timestamp" => Ok(GeneratedField::Timestamp),
                            "workingSetBytes" | "working_set_bytes" => Ok(GeneratedField::WorkingSetBytes),
                            "availableBytes" | "available_bytes" => Ok(GeneratedField::AvailableBytes),
                            "usageBytes" | "usage_bytes" => Ok(GeneratedField::UsageBytes),
                            "rssBytes" | "rss_bytes" => Ok(GeneratedField::RssBytes),
                            "pageFaults" | "page_faults" => Ok(GeneratedField::PageFaults),
                            "majorPageFaults" | "major_page_faults" => Ok(GeneratedField::MajorPageFaults),
                            "psi" => Ok(GeneratedField::Psi),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = MemoryUsage;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.MemoryUsage")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<MemoryUsage, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut timestamp__ = None;
                let mut working_set_bytes__ = None;
                let mut available_bytes__ = None;
                let mut usage_bytes__ = None;
                let mut rss_bytes__ = None;
                let mut page_faults__ = None;
                let mut major_page_faults__ = None;
                let mut psi__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Timestamp => {
                            if timestamp__.is_some() {
                                return Err(serde::de::Error::duplicate_field("timestamp"));
                            }
                            timestamp__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::WorkingSetBytes => {
                            if working_set_bytes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("workingSetBytes"));
                            }
                            working_set_bytes__ = map_.next_value()?;
                        }
                        GeneratedField::AvailableBytes => {
                            if available_bytes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("availableBytes"));
                            }
                            available_bytes__ = map_.next_value()?;
                        }
                        GeneratedField::UsageBytes => {
                            if usage_bytes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("usageBytes"));
                            }
                            usage_bytes__ = map_.next_value()?;
                        }
                        GeneratedField::RssBytes => {
                            if rss_bytes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("rssBytes"));
                            }
                            rss_bytes__ = map_.next_value()?;
                        }
                        GeneratedField::PageFaults => {
                            if page_faults__.is_some() {
                                return Err(serde::de::Error::duplicate_field("pageFaults"));
                            }
                            page_faults__ = map_.next_value()?;
                        }
                        GeneratedField::MajorPageFaults => {
                            if major_page_faults__.is_some() {
                                return Err(serde::de::Error::duplicate_field("majorPageFaults"));
                            }
                            major_page_faults__ = map_.next_value()?;
                        }
                        GeneratedField::Psi => {
                            if psi__.is_some() {
                                return Err(serde::de::Error::duplicate_field("psi"));
                            }
                            psi__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(MemoryUsage {
                    timestamp: timestamp__.unwrap_or_default(),
                    working_set_bytes: working_set_bytes__,
                    available_bytes: available_bytes__,
                    usage_bytes: usage_bytes__,
                    rss_bytes: rss_bytes__,
                    page_faults: page_faults__,
                    major_page_faults: major_page_faults__,
                    psi: psi__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.MemoryUsage", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for Metric {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.Metric", len)?;
        if true {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("timestamp", ToString::to_string(&self.timestamp).as_str())?;
        }
        if true {
            let v = MetricType::try_from(self.metric_type)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.metric_type)))?;
            struct_ser.serialize_field("metricType", &v)?;
        }
        if true {
            struct_ser.serialize_field("labelValues", &self.label_values)?;
        }
        if let Some(v) = self.value.as_ref() {
            struct_ser.serialize_field("value", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for Metric {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "name",
            "timestamp",
            "metric_type",
            "metricType",
            "label_values",
            "labelValues",
            "value",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Name,
            Timestamp,
            MetricType,
            LabelValues,
            Value,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "name" => Ok(GeneratedField::Name),
                            "timestamp" => Ok(GeneratedField::Timestamp),
                            "metricType" | "metric_type" => Ok(GeneratedField::MetricType),
                            "labelValues" | "label_values" => Ok(GeneratedField::LabelValues),
                            "value" => Ok(GeneratedField::Value),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = Metric;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.Metric")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<Metric, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut name__ = None;
                let mut timestamp__ = None;
                let mut metric_type__ = None;
                let mut label_values__ = None;
                let mut value__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Timestamp => {
                            if timestamp__.is_some() {
                                return Err(serde::de::Error::duplicate_field("timestamp"));
                            }
                            timestamp__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::MetricType => {
                            if metric_type__.is_some() {
                                return Err(serde::de::Error::duplicate_field("metricType"));
                            }
                            metric_type__ = Some(map_.next_value::<MetricType>()? as i32);
                        }
                        GeneratedField::LabelValues => {
                            if label_values__.is_some() {
                                return Err(serde::de::Error::duplicate_field("labelValues"));
                            }
                            label_values__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Value => {
                            if value__.is_some() {
                                return Err(serde::de::Error::duplicate_field("value"));
                            }
                            value__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(Metric {
                    name: name__.unwrap_or_default(),
                    timestamp: timestamp__.unwrap_or_default(),
                    metric_type: metric_type__.unwrap_or_default(),
                    label_values: label_values__.unwrap_or_default(),
                    value: value__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.Metric", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for MetricDescriptor {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.MetricDescriptor", len)?;
        if true {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if true {
            struct_ser.serialize_field("help", &self.help)?;
        }
        if true {
            struct_ser.serialize_field("labelKeys", &self.label_keys)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for MetricDescriptor {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "name",
            "help",
            "label_keys",
            "labelKeys",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Name,
            Help,
            LabelKeys,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "name" => Ok(GeneratedField::Name),
                            "help" => Ok(GeneratedField::Help),
                            "labelKeys" | "label_keys" => Ok(GeneratedField::LabelKeys),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = MetricDescriptor;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.MetricDescriptor")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<MetricDescriptor, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut name__ = None;
                let mut help__ = None;
                let mut label_keys__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Help => {
                            if help__.is_some() {
                                return Err(serde::de::Error::duplicate_field("help"));
                            }
                            help__ = Some(map_.next_value()?);
                        }
                        GeneratedField::LabelKeys => {
                            if label_keys__.is_some() {
                                return Err(serde::de::Error::duplicate_field("labelKeys"));
                            }
                            label_keys__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(MetricDescriptor {
                    name: name__.unwrap_or_default(),
                    help: help__.unwrap_or_default(),
                    label_keys: label_keys__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.MetricDescriptor", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for MetricType {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        let variant = match self {
            Self::Counter => "COUNTER",
            Self::Gauge => "GAUGE",
        };
        serializer.serialize_str(variant)
    }
}
impl<'de> serde::Deserialize<'de> for MetricType {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "COUNTER",
            "GAUGE",
        ];

        struct GeneratedVisitor;

        impl serde::de::Visitor<'_> for GeneratedVisitor {
            type Value = MetricType;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(formatter, "expected one of: {:?}", &FIELDS)
            }

            fn visit_i64<E>(self, v: i64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Signed(v), &self)
                    })
            }

            fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Unsigned(v), &self)
                    })
            }

            fn visit_str<E>(self, value: &str) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                match value {
                    "COUNTER" => Ok(MetricType::Counter),
                    "GAUGE" => Ok(MetricType::Gauge),
                    _ => Err(serde::de::Error::unknown_variant(value, FIELDS)),
                }
            }
        }
        deserializer.deserialize_any(GeneratedVisitor)
    }
}
impl serde::Serialize for Mount {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.Mount", len)?;
        if true {
            struct_ser.serialize_field("containerPath", &self.container_path)?;
        }
        if true {
            struct_ser.serialize_field("hostPath", &self.host_path)?;
        }
        if true {
            struct_ser.serialize_field("readonly", &self.readonly)?;
        }
        if true {
            struct_ser.serialize_field("selinuxRelabel", &self.selinux_relabel)?;
        }
        if true {
            let v = MountPropagation::try_from(self.propagation)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.propagation)))?;
            struct_ser.serialize_field("propagation", &v)?;
        }
        if true {
            struct_ser.serialize_field("uidMappings", &self.uid_mappings)?;
        }
        if true {
            struct_ser.serialize_field("gidMappings", &self.gid_mappings)?;
        }
        if true {
            struct_ser.serialize_field("recursiveReadOnly", &self.recursive_read_only)?;
        }
        if let Some(v) = self.image.as_ref() {
            struct_ser.serialize_field("image", v)?;
        }
        if true {
            struct_ser.serialize_field("imageSubPath", &self.image_sub_path)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for Mount {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "container_path",
            "containerPath",
            "host_path",
            "hostPath",
            "readonly",
            "selinux_relabel",
            "selinuxRelabel",
            "propagation",
            "uidMappings",
            "gidMappings",
            "recursive_read_only",
            "recursiveReadOnly",
            "image",
            "image_sub_path",
            "imageSubPath",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            ContainerPath,
            HostPath,
            Readonly,
            SelinuxRelabel,
            Propagation,
            UidMappings,
            GidMappings,
            RecursiveReadOnly,
            Image,
            ImageSubPath,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "containerPath" | "container_path" => Ok(GeneratedField::ContainerPath),
                            "hostPath" | "host_path" => Ok(GeneratedField::HostPath),
                            "readonly" => Ok(GeneratedField::Readonly),
                            "selinuxRelabel" | "selinux_relabel" => Ok(GeneratedField::SelinuxRelabel),
                            "propagation" => Ok(GeneratedField::Propagation),
                            "uidMappings" => Ok(GeneratedField::UidMappings),
                            "gidMappings" => Ok(GeneratedField::GidMappings),
                            "recursiveReadOnly" | "recursive_read_only" => Ok(GeneratedField::RecursiveReadOnly),
                            "image" => Ok(GeneratedField::Image),
                            "imageSubPath" | "image_sub_path" => Ok(GeneratedField::ImageSubPath),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = Mount;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.Mount")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<Mount, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut container_path__ = None;
                let mut host_path__ = None;
                let mut readonly__ = None;
                let mut selinux_relabel__ = None;
                let mut propagation__ = None;
                let mut uid_mappings__ = None;
                let mut gid_mappings__ = None;
                let mut recursive_read_only__ = None;
                let mut image__ = None;
                let mut image_sub_path__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::ContainerPath => {
                            if container_path__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containerPath"));
                            }
                            container_path__ = Some(map_.next_value()?);
                        }
                        GeneratedField::HostPath => {
                            if host_path__.is_some() {
                                return Err(serde::de::Error::duplicate_field("hostPath"));
                            }
                            host_path__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Readonly => {
                            if readonly__.is_some() {
                                return Err(serde::de::Error::duplicate_field("readonly"));
                            }
                            readonly__ = Some(map_.next_value()?);
                        }
                        GeneratedField::SelinuxRelabel => {
                            if selinux_relabel__.is_some() {
                                return Err(serde::de::Error::duplicate_field("selinuxRelabel"));
                            }
                            selinux_relabel__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Propagation => {
                            if propagation__.is_some() {
                                return Err(serde::de::Error::duplicate_field("propagation"));
                            }
                            propagation__ = Some(map_.next_value::<MountPropagation>()? as i32);
                        }
                        GeneratedField::UidMappings => {
                            if uid_mappings__.is_some() {
                                return Err(serde::de::Error::duplicate_field("uidMappings"));
                            }
                            uid_mappings__ = Some(map_.next_value()?);
                        }
                        GeneratedField::GidMappings => {
                            if gid_mappings__.is_some() {
                                return Err(serde::de::Error::duplicate_field("gidMappings"));
                            }
                            gid_mappings__ = Some(map_.next_value()?);
                        }
                        GeneratedField::RecursiveReadOnly => {
                            if recursive_read_only__.is_some() {
                                return Err(serde::de::Error::duplicate_field("recursiveReadOnly"));
                            }
                            recursive_read_only__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Image => {
                            if image__.is_some() {
                                return Err(serde::de::Error::duplicate_field("image"));
                            }
                            image__ = map_.next_value()?;
                        }
                        GeneratedField::ImageSubPath => {
                            if image_sub_path__.is_some() {
                                return Err(serde::de::Error::duplicate_field("imageSubPath"));
                            }
                            image_sub_path__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(Mount {
                    container_path: container_path__.unwrap_or_default(),
                    host_path: host_path__.unwrap_or_default(),
                    readonly: readonly__.unwrap_or_default(),
                    selinux_relabel: selinux_relabel__.unwrap_or_default(),
                    propagation: propagation__.unwrap_or_default(),
                    uid_mappings: uid_mappings__.unwrap_or_default(),
                    gid_mappings: gid_mappings__.unwrap_or_default(),
                    recursive_read_only: recursive_read_only__.unwrap_or_default(),
                    image: image__,
                    image_sub_path: image_sub_path__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.Mount", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for MountPropagation {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        let variant = match self {
            Self::PropagationPrivate => "PROPAGATION_PRIVATE",
            Self::PropagationHostToContainer => "PROPAGATION_HOST_TO_CONTAINER",
            Self::PropagationBidirectional => "PROPAGATION_BIDIRECTIONAL",
        };
        serializer.serialize_str(variant)
    }
}
impl<'de> serde::Deserialize<'de> for MountPropagation {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "PROPAGATION_PRIVATE",
            "PROPAGATION_HOST_TO_CONTAINER",
            "PROPAGATION_BIDIRECTIONAL",
        ];

        struct GeneratedVisitor;

        impl serde::de::Visitor<'_> for GeneratedVisitor {
            type Value = MountPropagation;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(formatter, "expected one of: {:?}", &FIELDS)
            }

            fn visit_i64<E>(self, v: i64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Signed(v), &self)
                    })
            }

            fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Unsigned(v), &self)
                    })
            }

            fn visit_str<E>(self, value: &str) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                match value {
                    "PROPAGATION_PRIVATE" => Ok(MountPropagation::PropagationPrivate),
                    "PROPAGATION_HOST_TO_CONTAINER" => Ok(MountPropagation::PropagationHostToContainer),
                    "PROPAGATION_BIDIRECTIONAL" => Ok(MountPropagation::PropagationBidirectional),
                    _ => Err(serde::de::Error::unknown_variant(value, FIELDS)),
                }
            }
        }
        deserializer.deserialize_any(GeneratedVisitor)
    }
}
impl serde::Serialize for Namespace {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.Namespace", len)?;
        if let Some(v) = self.options.as_ref() {
            struct_ser.serialize_field("options", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for Namespace {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "options",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Options,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "options" => Ok(GeneratedField::Options),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = Namespace;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.Namespace")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<Namespace, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut options__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Options => {
                            if options__.is_some() {
                                return Err(serde::de::Error::duplicate_field("options"));
                            }
                            options__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(Namespace {
                    options: options__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.Namespace", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for NamespaceMode {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        let variant = match self {
            Self::Pod => "POD",
            Self::Container => "CONTAINER",
            Self::Node => "NODE",
            Self::Target => "TARGET",
        };
        serializer.serialize_str(variant)
    }
}
impl<'de> serde::Deserialize<'de> for NamespaceMode {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "POD",
            "CONTAINER",
            "NODE",
            "TARGET",
        ];

        struct GeneratedVisitor;

        impl serde::de::Visitor<'_> for GeneratedVisitor {
            type Value = NamespaceMode;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(formatter, "expected one of: {:?}", &FIELDS)
            }

            fn visit_i64<E>(self, v: i64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Signed(v), &self)
                    })
            }

            fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Unsigned(v), &self)
                    })
            }

            fn visit_str<E>(self, value: &str) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                match value {
                    "POD" => Ok(NamespaceMode::Pod),
                    "CONTAINER" => Ok(NamespaceMode::Container),
                    "NODE" => Ok(NamespaceMode::Node),
                    "TARGET" => Ok(NamespaceMode::Target),
                    _ => Err(serde::de::Error::unknown_variant(value, FIELDS)),
                }
            }
        }
        deserializer.deserialize_any(GeneratedVisitor)
    }
}
impl serde::Serialize for NamespaceOption {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.NamespaceOption", len)?;
        if true {
            let v = NamespaceMode::try_from(self.network)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.network)))?;
            struct_ser.serialize_field("network", &v)?;
        }
        if true {
            let v = NamespaceMode::try_from(self.pid)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.pid)))?;
            struct_ser.serialize_field("pid", &v)?;
        }
        if true {
            let v = NamespaceMode::try_from(self.ipc)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.ipc)))?;
            struct_ser.serialize_field("ipc", &v)?;
        }
        if true {
            struct_ser.serialize_field("targetId", &self.target_id)?;
        }
        if let Some(v) = self.userns_options.as_ref() {
            struct_ser.serialize_field("usernsOptions", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for NamespaceOption {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "network",
            "pid",
            "ipc",
            "target_id",
            "targetId",
            "userns_options",
            "usernsOptions",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Network,
            Pid,
            Ipc,
            TargetId,
            UsernsOptions,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "network" => Ok(GeneratedField::Network),
                            "pid" => Ok(GeneratedField::Pid),
                            "ipc" => Ok(GeneratedField::Ipc),
                            "targetId" | "target_id" => Ok(GeneratedField::TargetId),
                            "usernsOptions" | "userns_options" => Ok(GeneratedField::UsernsOptions),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = NamespaceOption;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.NamespaceOption")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<NamespaceOption, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut network__ = None;
                let mut pid__ = None;
                let mut ipc__ = None;
                let mut target_id__ = None;
                let mut userns_options__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Network => {
                            if network__.is_some() {
                                return Err(serde::de::Error::duplicate_field("network"));
                            }
                            network__ = Some(map_.next_value::<NamespaceMode>()? as i32);
                        }
                        GeneratedField::Pid => {
                            if pid__.is_some() {
                                return Err(serde::de::Error::duplicate_field("pid"));
                            }
                            pid__ = Some(map_.next_value::<NamespaceMode>()? as i32);
                        }
                        GeneratedField::Ipc => {
                            if ipc__.is_some() {
                                return Err(serde::de::Error::duplicate_field("ipc"));
                            }
                            ipc__ = Some(map_.next_value::<NamespaceMode>()? as i32);
                        }
                        GeneratedField::TargetId => {
                            if target_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("targetId"));
                            }
                            target_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::UsernsOptions => {
                            if userns_options__.is_some() {
                                return Err(serde::de::Error::duplicate_field("usernsOptions"));
                            }
                            userns_options__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(NamespaceOption {
                    network: network__.unwrap_or_default(),
                    pid: pid__.unwrap_or_default(),
                    ipc: ipc__.unwrap_or_default(),
                    target_id: target_id__.unwrap_or_default(),
                    userns_options: userns_options__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.NamespaceOption", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for NetworkConfig {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.NetworkConfig", len)?;
        if true {
            struct_ser.serialize_field("podCidr", &self.pod_cidr)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for NetworkConfig {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "pod_cidr",
            "podCidr",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            PodCidr,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "podCidr" | "pod_cidr" => Ok(GeneratedField::PodCidr),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = NetworkConfig;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.NetworkConfig")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<NetworkConfig, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut pod_cidr__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::PodCidr => {
                            if pod_cidr__.is_some() {
                                return Err(serde::de::Error::duplicate_field("podCidr"));
                            }
                            pod_cidr__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(NetworkConfig {
                    pod_cidr: pod_cidr__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.NetworkConfig", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for NetworkInterfaceUsage {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.NetworkInterfaceUsage", len)?;
        if true {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if let Some(v) = self.rx_bytes.as_ref() {
            struct_ser.serialize_field("rxBytes", v)?;
        }
        if let Some(v) = self.rx_errors.as_ref() {
            struct_ser.serialize_field("rxErrors", v)?;
        }
        if let Some(v) = self.tx_bytes.as_ref() {
            struct_ser.serialize_field("txBytes", v)?;
        }
        if let Some(v) = self.tx_errors.as_ref() {
            struct_ser.serialize_field("txErrors", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for NetworkInterfaceUsage {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "name",
            "rx_bytes",
            "rxBytes",
            "rx_errors",
            "rxErrors",
            "tx_bytes",
            "txBytes",
            "tx_errors",
            "txErrors",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Name,
            RxBytes,
            RxErrors,
            TxBytes,
            TxErrors,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "name" => Ok(GeneratedField::Name),
                            "rxBytes" | "rx_bytes" => Ok(GeneratedField::RxBytes),
                            "rxErrors" | "rx_errors" => Ok(GeneratedField::RxErrors),
                            "txBytes" | "tx_bytes" => Ok(GeneratedField::TxBytes),
                            "txErrors" | "tx_errors" => Ok(GeneratedField::TxErrors),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = NetworkInterfaceUsage;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.NetworkInterfaceUsage")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<NetworkInterfaceUsage, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut name__ = None;
                let mut rx_bytes__ = None;
                let mut rx_errors__ = None;
                let mut tx_bytes__ = None;
                let mut tx_errors__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::RxBytes => {
                            if rx_bytes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("rxBytes"));
                            }
                            rx_bytes__ = map_.next_value()?;
                        }
                        GeneratedField::RxErrors => {
                            if rx_errors__.is_some() {
                                return Err(serde::de::Error::duplicate_field("rxErrors"));
                            }
                            rx_errors__ = map_.next_value()?;
                        }
                        GeneratedField::TxBytes => {
                            if tx_bytes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("txBytes"));
                            }
                            tx_bytes__ = map_.next_value()?;
                        }
                        GeneratedField::TxErrors => {
                            if tx_errors__.is_some() {
                                return Err(serde::de::Error::duplicate_field("txErrors"));
                            }
                            tx_errors__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(NetworkInterfaceUsage {
                    name: name__.unwrap_or_default(),
                    rx_bytes: rx_bytes__,
                    rx_errors: rx_errors__,
                    tx_bytes: tx_bytes__,
                    tx_errors: tx_errors__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.NetworkInterfaceUsage", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for NetworkUsage {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.NetworkUsage", len)?;
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("timestamp", ToString::to_string(&self.timestamp).as_str())?;
        }
        if let Some(v) = self.default_interface.as_ref() {
            struct_ser.serialize_field("defaultInterface", v)?;
        }
        if true {
            struct_ser.serialize_field("interfaces", &self.interfaces)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for NetworkUsage {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "timestamp",
            "default_interface",
            "defaultInterface",
            "interfaces",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Timestamp,
            DefaultInterface,
            Interfaces,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "timestamp" => Ok(GeneratedField::Timestamp),
                            "defaultInterface" | "default_interface" => Ok(GeneratedField::DefaultInterface),
                            "interfaces" => Ok(GeneratedField::Interfaces),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = NetworkUsage;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.NetworkUsage")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<NetworkUsage, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut timestamp__ = None;
                let mut default_interface__ = None;
                let mut interfaces__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Timestamp => {
                            if timestamp__.is_some() {
                                return Err(serde::de::Error::duplicate_field("timestamp"));
                            }
                            timestamp__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::DefaultInterface => {
                            if default_interface__.is_some() {
                                return Err(serde::de::Error::duplicate_field("defaultInterface"));
                            }
                            default_interface__ = map_.next_value()?;
                        }
                        GeneratedField::Interfaces => {
                            if interfaces__.is_some() {
                                return Err(serde::de::Error::duplicate_field("interfaces"));
                            }
                            interfaces__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(NetworkUsage {
                    timestamp: timestamp__.unwrap_or_default(),
                    default_interface: default_interface__,
                    interfaces: interfaces__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.NetworkUsage", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PodIp {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PodIP", len)?;
        if true {
            struct_ser.serialize_field("ip", &self.ip)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PodIp {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "ip",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Ip,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "ip" => Ok(GeneratedField::Ip),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PodIp;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PodIP")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PodIp, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut ip__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Ip => {
                            if ip__.is_some() {
                                return Err(serde::de::Error::duplicate_field("ip"));
                            }
                            ip__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PodIp {
                    ip: ip__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PodIP", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PodSandbox {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PodSandbox", len)?;
        if true {
            struct_ser.serialize_field("id", &self.id)?;
        }
        if let Some(v) = self.metadata.as_ref() {
            struct_ser.serialize_field("metadata", v)?;
        }
        if true {
            let v = PodSandboxState::try_from(self.state)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.state)))?;
            struct_ser.serialize_field("state", &v)?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("createdAt", ToString::to_string(&self.created_at).as_str())?;
        }
        if true {
            struct_ser.serialize_field("labels", &self.labels)?;
        }
        if true {
            struct_ser.serialize_field("annotations", &self.annotations)?;
        }
        if true {
            struct_ser.serialize_field("runtimeHandler", &self.runtime_handler)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PodSandbox {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "id",
            "metadata",
            "state",
            "created_at",
            "createdAt",
            "labels",
            "annotations",
            "runtime_handler",
            "runtimeHandler",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Id,
            Metadata,
            State,
            CreatedAt,
            Labels,
            Annotations,
            RuntimeHandler,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "id" => Ok(GeneratedField::Id),
                            "metadata" => Ok(GeneratedField::Metadata),
                            "state" => Ok(GeneratedField::State),
                            "createdAt" | "created_at" => Ok(GeneratedField::CreatedAt),
                            "labels" => Ok(GeneratedField::Labels),
                            "annotations" => Ok(GeneratedField::Annotations),
                            "runtimeHandler" | "runtime_handler" => Ok(GeneratedField::RuntimeHandler),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PodSandbox;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PodSandbox")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PodSandbox, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut id__ = None;
                let mut metadata__ = None;
                let mut state__ = None;
                let mut created_at__ = None;
                let mut labels__ = None;
                let mut annotations__ = None;
                let mut runtime_handler__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Id => {
                            if id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("id"));
                            }
                            id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Metadata => {
                            if metadata__.is_some() {
                                return Err(serde::de::Error::duplicate_field("metadata"));
                            }
                            metadata__ = map_.next_value()?;
                        }
                        GeneratedField::State => {
                            if state__.is_some() {
                                return Err(serde::de::Error::duplicate_field("state"));
                            }
                            state__ = Some(map_.next_value::<PodSandboxState>()? as i32);
                        }
                        GeneratedField::CreatedAt => {
                            if created_at__.is_some() {
                                return Err(serde::de::Error::duplicate_field("createdAt"));
                            }
                            created_at__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::Labels => {
                            if labels__.is_some() {
                                return Err(serde::de::Error::duplicate_field("labels"));
                            }
                            labels__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::Annotations => {
                            if annotations__.is_some() {
                                return Err(serde::de::Error::duplicate_field("annotations"));
                            }
                            annotations__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::RuntimeHandler => {
                            if runtime_handler__.is_some() {
                                return Err(serde::de::Error::duplicate_field("runtimeHandler"));
                            }
                            runtime_handler__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PodSandbox {
                    id: id__.unwrap_or_default(),
                    metadata: metadata__,
                    state: state__.unwrap_or_default(),
                    created_at: created_at__.unwrap_or_default(),
                    labels: labels__.unwrap_or_default(),
                    annotations: annotations__.unwrap_or_default(),
                    runtime_handler: runtime_handler__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PodSandbox", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PodSandboxAttributes {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PodSandboxAttributes", len)?;
        if true {
            struct_ser.serialize_field("id", &self.id)?;
        }
        if let Some(v) = self.metadata.as_ref() {
            struct_ser.serialize_field("metadata", v)?;
        }
        if true {
            struct_ser.serialize_field("labels", &self.labels)?;
        }
        if true {
            struct_ser.serialize_field("annotations", &self.annotations)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PodSandboxAttributes {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "id",
            "metadata",
            "labels",
            "annotations",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Id,
            Metadata,
            Labels,
            Annotations,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "id" => Ok(GeneratedField::Id),
                            "metadata" => Ok(GeneratedField::Metadata),
                            "labels" => Ok(GeneratedField::Labels),
                            "annotations" => Ok(GeneratedField::Annotations),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PodSandboxAttributes;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PodSandboxAttributes")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PodSandboxAttributes, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut id__ = None;
                let mut metadata__ = None;
                let mut labels__ = None;
                let mut annotations__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Id => {
                            if id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("id"));
                            }
                            id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Metadata => {
                            if metadata__.is_some() {
                                return Err(serde::de::Error::duplicate_field("metadata"));
                            }
                            metadata__ = map_.next_value()?;
                        }
                        GeneratedField::Labels => {
                            if labels__.is_some() {
                                return Err(serde::de::Error::duplicate_field("labels"));
                            }
                            labels__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::Annotations => {
                            if annotations__.is_some() {
                                return Err(serde::de::Error::duplicate_field("annotations"));
                            }
                            annotations__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PodSandboxAttributes {
                    id: id__.unwrap_or_default(),
                    metadata: metadata__,
                    labels: labels__.unwrap_or_default(),
                    annotations: annotations__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PodSandboxAttributes", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PodSandboxConfig {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PodSandboxConfig", len)?;
        if let Some(v) = self.metadata.as_ref() {
            struct_ser.serialize_field("metadata", v)?;
        }
        if true {
            struct_ser.serialize_field("hostname", &self.hostname)?;
        }
        if true {
            struct_ser.serialize_field("logDirectory", &self.log_directory)?;
        }
        if let Some(v) = self.dns_config.as_ref() {
            struct_ser.serialize_field("dnsConfig", v)?;
        }
        if true {
            struct_ser.serialize_field("portMappings", &self.port_mappings)?;
        }
        if true {
            struct_ser.serialize_field("labels", &self.labels)?;
        }
        if true {
            struct_ser.serialize_field("annotations", &self.annotations)?;
        }
        if let Some(v) = self.linux.as_ref() {
            struct_ser.serialize_field("linux", v)?;
        }
        if let Some(v) = self.windows.as_ref() {
            struct_ser.serialize_field("windows", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PodSandboxConfig {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "metadata",
            "hostname",
            "log_directory",
            "logDirectory",
            "dns_config",
            "dnsConfig",
            "port_mappings",
            "portMappings",
            "labels",
            "annotations",
            "linux",
            "windows",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Metadata,
            Hostname,
            LogDirectory,
            DnsConfig,
            PortMappings,
            Labels,
            Annotations,
            Linux,
            Windows,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "metadata" => Ok(GeneratedField::Metadata),
                            "hostname" => Ok(GeneratedField::Hostname),
                            "logDirectory" | "log_directory" => Ok(GeneratedField::LogDirectory),
                            "dnsConfig" | "dns_config" => Ok(GeneratedField::DnsConfig),
                            "portMappings" | "port_mappings" => Ok(GeneratedField::PortMappings),
                            "labels" => Ok(GeneratedField::Labels),
                            "annotations" => Ok(GeneratedField::Annotations),
                            "linux" => Ok(GeneratedField::Linux),
                            "windows" => Ok(GeneratedField::Windows),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PodSandboxConfig;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PodSandboxConfig")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PodSandboxConfig, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut metadata__ = None;
                let mut hostname__ = None;
                let mut log_directory__ = None;
                let mut dns_config__ = None;
                let mut port_mappings__ = None;
                let mut labels__ = None;
                let mut annotations__ = None;
                let mut linux__ = None;
                let mut windows__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Metadata => {
                            if metadata__.is_some() {
                                return Err(serde::de::Error::duplicate_field("metadata"));
                            }
                            metadata__ = map_.next_value()?;
                        }
                        GeneratedField::Hostname => {
                            if hostname__.is_some() {
                                return Err(serde::de::Error::duplicate_field("hostname"));
                            }
                            hostname__ = Some(map_.next_value()?);
                        }
                        GeneratedField::LogDirectory => {
                            if log_directory__.is_some() {
                                return Err(serde::de::Error::duplicate_field("logDirectory"));
                            }
                            log_directory__ = Some(map_.next_value()?);
                        }
                        GeneratedField::DnsConfig => {
                            if dns_config__.is_some() {
                                return Err(serde::de::Error::duplicate_field("dnsConfig"));
                            }
                            dns_config__ = map_.next_value()?;
                        }
                        GeneratedField::PortMappings => {
                            if port_mappings__.is_some() {
                                return Err(serde::de::Error::duplicate_field("portMappings"));
                            }
                            port_mappings__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Labels => {
                            if labels__.is_some() {
                                return Err(serde::de::Error::duplicate_field("labels"));
                            }
                            labels__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::Annotations => {
                            if annotations__.is_some() {
                                return Err(serde::de::Error::duplicate_field("annotations"));
                            }
                            annotations__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::Linux => {
                            if linux__.is_some() {
                                return Err(serde::de::Error::duplicate_field("linux"));
                            }
                            linux__ = map_.next_value()?;
                        }
                        GeneratedField::Windows => {
                            if windows__.is_some() {
                                return Err(serde::de::Error::duplicate_field("windows"));
                            }
                            windows__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PodSandboxConfig {
                    metadata: metadata__,
                    hostname: hostname__.unwrap_or_default(),
                    log_directory: log_directory__.unwrap_or_default(),
                    dns_config: dns_config__,
                    port_mappings: port_mappings__.unwrap_or_default(),
                    labels: labels__.unwrap_or_default(),
                    annotations: annotations__.unwrap_or_default(),
                    linux: linux__,
                    windows: windows__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PodSandboxConfig", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PodSandboxFilter {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PodSandboxFilter", len)?;
        if true {
            struct_ser.serialize_field("id", &self.id)?;
        }
        if let Some(v) = self.state.as_ref() {
            struct_ser.serialize_field("state", v)?;
        }
        if true {
            struct_ser.serialize_field("labelSelector", &self.label_selector)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PodSandboxFilter {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "id",
            "state",
            "label_selector",
            "labelSelector",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Id,
            State,
            LabelSelector,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "id" => Ok(GeneratedField::Id),
                            "state" => Ok(GeneratedField::State),
                            "labelSelector" | "label_selector" => Ok(GeneratedField::LabelSelector),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PodSandboxFilter;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PodSandboxFilter")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PodSandboxFilter, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut id__ = None;
                let mut state__ = None;
                let mut label_selector__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Id => {
                            if id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("id"));
                            }
                            id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::State => {
                            if state__.is_some() {
                                return Err(serde::de::Error::duplicate_field("state"));
                            }
                            state__ = map_.next_value()?;
                        }
                        GeneratedField::LabelSelector => {
                            if label_selector__.is_some() {
                                return Err(serde::de::Error::duplicate_field("labelSelector"));
                            }
                            label_selector__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PodSandboxFilter {
                    id: id__.unwrap_or_default(),
                    state: state__,
                    label_selector: label_selector__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PodSandboxFilter", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PodSandboxMetadata {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PodSandboxMetadata", len)?;
        if true {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if true {
            struct_ser.serialize_field("uid", &self.uid)?;
        }
        if true {
            struct_ser.serialize_field("namespace", &self.namespace)?;
        }
        if true {
            struct_ser.serialize_field("attempt", &self.attempt)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PodSandboxMetadata {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "name",
            "uid",
            "namespace",
            "attempt",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Name,
            Uid,
            Namespace,
            Attempt,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "name" => Ok(GeneratedField::Name),
                            "uid" => Ok(GeneratedField::Uid),
                            "namespace" => Ok(GeneratedField::Namespace),
                            "attempt" => Ok(GeneratedField::Attempt),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PodSandboxMetadata;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PodSandboxMetadata")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PodSandboxMetadata, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut name__ = None;
                let mut uid__ = None;
                let mut namespace__ = None;
                let mut attempt__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Uid => {
                            if uid__.is_some() {
                                return Err(serde::de::Error::duplicate_field("uid"));
                            }
                            uid__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Namespace => {
                            if namespace__.is_some() {
                                return Err(serde::de::Error::duplicate_field("namespace"));
                            }
                            namespace__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Attempt => {
                            if attempt__.is_some() {
                                return Err(serde::de::Error::duplicate_field("attempt"));
                            }
                            attempt__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PodSandboxMetadata {
                    name: name__.unwrap_or_default(),
                    uid: uid__.unwrap_or_default(),
                    namespace: namespace__.unwrap_or_default(),
                    attempt: attempt__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PodSandboxMetadata", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PodSandboxMetrics {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PodSandboxMetrics", len)?;
        if true {
            struct_ser.serialize_field("podSandboxId", &self.pod_sandbox_id)?;
        }
        if true {
            struct_ser.serialize_field("metrics", &self.metrics)?;
        }
        if true {
            struct_ser.serialize_field("containerMetrics", &self.container_metrics)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PodSandboxMetrics {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "pod_sandbox_id",
            "podSandboxId",
            "metrics",
            "container_metrics",
            "containerMetrics",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            PodSandboxId,
            Metrics,
            ContainerMetrics,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "podSandboxId" | "pod_sandbox_id" => Ok(GeneratedField::PodSandboxId),
                            "metrics" => Ok(GeneratedField::Metrics),
                            "containerMetrics" | "container_metrics" => Ok(GeneratedField::ContainerMetrics),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PodSandboxMetrics;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PodSandboxMetrics")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PodSandboxMetrics, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut pod_sandbox_id__ = None;
                let mut metrics__ = None;
                let mut container_metrics__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::PodSandboxId => {
                            if pod_sandbox_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("podSandboxId"));
                            }
                            pod_sandbox_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Metrics => {
                            if metrics__.is_some() {
                                return Err(serde::de::Error::duplicate_field("metrics"));
                            }
                            metrics__ = Some(map_.next_value()?);
                        }
                        GeneratedField::ContainerMetrics => {
                            if container_metrics__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containerMetrics"));
                            }
                            container_metrics__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PodSandboxMetrics {
                    pod_sandbox_id: pod_sandbox_id__.unwrap_or_default(),
                    metrics: metrics__.unwrap_or_default(),
                    container_metrics: container_metrics__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PodSandboxMetrics", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PodSandboxNetworkStatus {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PodSandboxNetworkStatus", len)?;
        if true {
            struct_ser.serialize_field("ip", &self.ip)?;
        }
        if true {
            struct_ser.serialize_field("additionalIps", &self.additional_ips)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PodSandboxNetworkStatus {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "ip",
            "additional_ips",
            "additionalIps",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Ip,
            AdditionalIps,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "ip" => Ok(GeneratedField::Ip),
                            "additionalIps" | "additional_ips" => Ok(GeneratedField::AdditionalIps),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PodSandboxNetworkStatus;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PodSandboxNetworkStatus")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PodSandboxNetworkStatus, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut ip__ = None;
                let mut additional_ips__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Ip => {
                            if ip__.is_some() {
                                return Err(serde::de::Error::duplicate_field("ip"));
                            }
                            ip__ = Some(map_.next_value()?);
                        }
                        GeneratedField::AdditionalIps => {
                            if additional_ips__.is_some() {
                                return Err(serde::de::Error::duplicate_field("additionalIps"));
                            }
                            additional_ips__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PodSandboxNetworkStatus {
                    ip: ip__.unwrap_or_default(),
                    additional_ips: additional_ips__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PodSandboxNetworkStatus", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PodSandboxState {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        let variant = match self {
            Self::SandboxReady => "SANDBOX_READY",
            Self::SandboxNotready => "SANDBOX_NOTREADY",
        };
        serializer.serialize_str(variant)
    }
}
impl<'de> serde::Deserialize<'de> for PodSandboxState {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "SANDBOX_READY",
            "SANDBOX_NOTREADY",
        ];

        struct GeneratedVisitor;

        impl serde::de::Visitor<'_> for GeneratedVisitor {
            type Value = PodSandboxState;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(formatter, "expected one of: {:?}", &FIELDS)
            }

            fn visit_i64<E>(self, v: i64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Signed(v), &self)
                    })
            }

            fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Unsigned(v), &self)
                    })
            }

            fn visit_str<E>(self, value: &str) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                match value {
                    "SANDBOX_READY" => Ok(PodSandboxState::SandboxReady),
                    "SANDBOX_NOTREADY" => Ok(PodSandboxState::SandboxNotready),
                    _ => Err(serde::de::Error::unknown_variant(value, FIELDS)),
                }
            }
        }
        deserializer.deserialize_any(GeneratedVisitor)
    }
}
impl serde::Serialize for PodSandboxStateValue {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PodSandboxStateValue", len)?;
        if true {
            let v = PodSandboxState::try_from(self.state)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.state)))?;
            struct_ser.serialize_field("state", &v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PodSandboxStateValue {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "state",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            State,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "state" => Ok(GeneratedField::State),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PodSandboxStateValue;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PodSandboxStateValue")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PodSandboxStateValue, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut state__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::State => {
                            if state__.is_some() {
                                return Err(serde::de::Error::duplicate_field("state"));
                            }
                            state__ = Some(map_.next_value::<PodSandboxState>()? as i32);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PodSandboxStateValue {
                    state: state__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PodSandboxStateValue", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PodSandboxStats {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PodSandboxStats", len)?;
        if let Some(v) = self.attributes.as_ref() {
            struct_ser.serialize_field("attributes", v)?;
        }
        if let Some(v) = self.linux.as_ref() {
            struct_ser.serialize_field("linux", v)?;
        }
        if let Some(v) = self.windows.as_ref() {
            struct_ser.serialize_field("windows", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PodSandboxStats {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "attributes",
            "linux",
            "windows",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Attributes,
            Linux,
            Windows,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "attributes" => Ok(GeneratedField::Attributes),
                            "linux" => Ok(GeneratedField::Linux),
                            "windows" => Ok(GeneratedField::Windows),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PodSandboxStats;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PodSandboxStats")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PodSandboxStats, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut attributes__ = None;
                let mut linux__ = None;
                let mut windows__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Attributes => {
                            if attributes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("attributes"));
                            }
                            attributes__ = map_.next_value()?;
                        }
                        GeneratedField::Linux => {
                            if linux__.is_some() {
                                return Err(serde::de::Error::duplicate_field("linux"));
                            }
                            linux__ = map_.next_value()?;
                        }
                        GeneratedField::Windows => {
                            if windows__.is_some() {
                                return Err(serde::de::Error::duplicate_field("windows"));
                            }
                            windows__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PodSandboxStats {
                    attributes: attributes__,
                    linux: linux__,
                    windows: windows__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PodSandboxStats", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PodSandboxStatsFilter {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PodSandboxStatsFilter", len)?;
        if true {
            struct_ser.serialize_field("id", &self.id)?;
        }
        if true {
            struct_ser.serialize_field("labelSelector", &self.label_selector)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PodSandboxStatsFilter {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "id",
            "label_selector",
            "labelSelector",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Id,
            LabelSelector,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "id" => Ok(GeneratedField::Id),
                            "labelSelector" | "label_selector" => Ok(GeneratedField::LabelSelector),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PodSandboxStatsFilter;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PodSandboxStatsFilter")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PodSandboxStatsFilter, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut id__ = None;
                let mut label_selector__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Id => {
                            if id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("id"));
                            }
                            id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::LabelSelector => {
                            if label_selector__.is_some() {
                                return Err(serde::de::Error::duplicate_field("labelSelector"));
                            }
                            label_selector__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PodSandboxStatsFilter {
                    id: id__.unwrap_or_default(),
                    label_selector: label_selector__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PodSandboxStatsFilter", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PodSandboxStatsRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PodSandboxStatsRequest", len)?;
        if true {
            struct_ser.serialize_field("podSandboxId", &self.pod_sandbox_id)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PodSandboxStatsRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "pod_sandbox_id",
            "podSandboxId",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            PodSandboxId,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "podSandboxId" | "pod_sandbox_id" => Ok(GeneratedField::PodSandboxId),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PodSandboxStatsRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PodSandboxStatsRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PodSandboxStatsRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut pod_sandbox_id__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::PodSandboxId => {
                            if pod_sandbox_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("podSandboxId"));
                            }
                            pod_sandbox_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PodSandboxStatsRequest {
                    pod_sandbox_id: pod_sandbox_id__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PodSandboxStatsRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PodSandboxStatsResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PodSandboxStatsResponse", len)?;
        if let Some(v) = self.stats.as_ref() {
            struct_ser.serialize_field("stats", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PodSandboxStatsResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "stats",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Stats,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "stats" => Ok(GeneratedField::Stats),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PodSandboxStatsResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PodSandboxStatsResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PodSandboxStatsResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut stats__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Stats => {
                            if stats__.is_some() {
                                return Err(serde::de::Error::duplicate_field("stats"));
                            }
                            stats__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PodSandboxStatsResponse {
                    stats: stats__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PodSandboxStatsResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PodSandboxStatus {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PodSandboxStatus", len)?;
        if true {
            struct_ser.serialize_field("id", &self.id)?;
        }
        if let Some(v) = self.metadata.as_ref() {
            struct_ser.serialize_field("metadata", v)?;
        }
        if true {
            let v = PodSandboxState::try_from(self.state)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.state)))?;
            struct_ser.serialize_field("state", &v)?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("createdAt", ToString::to_string(&self.created_at).as_str())?;
        }
        if let Some(v) = self.network.as_ref() {
            struct_ser.serialize_field("network", v)?;
        }
        if let Some(v) = self.linux.as_ref() {
            struct_ser.serialize_field("linux", v)?;
        }
        if true {
            struct_ser.serialize_field("labels", &self.labels)?;
        }
        if true {
            struct_ser.serialize_field("annotations", &self.annotations)?;
        }
        if true {
            struct_ser.serialize_field("runtimeHandler", &self.runtime_handler)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PodSandboxStatus {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "id",
            "metadata",
            "state",
            "created_at",
            "createdAt",
            "network",
            "linux",
            "labels",
            "annotations",
            "runtime_handler",
            "runtimeHandler",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Id,
            Metadata,
            State,
            CreatedAt,
            Network,
            Linux,
            Labels,
            Annotations,
            RuntimeHandler,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "id" => Ok(GeneratedField::Id),
                            "metadata" => Ok(GeneratedField::Metadata),
                            "state" => Ok(GeneratedField::State),
                            "createdAt" | "created_at" => Ok(GeneratedField::CreatedAt),
                            "network" => Ok(GeneratedField::Network),
                            "linux" => Ok(GeneratedField::Linux),
                            "labels" => Ok(GeneratedField::Labels),
                            "annotations" => Ok(GeneratedField::Annotations),
                            "runtimeHandler" | "runtime_handler" => Ok(GeneratedField::RuntimeHandler),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PodSandboxStatus;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PodSandboxStatus")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PodSandboxStatus, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut id__ = None;
                let mut metadata__ = None;
                let mut state__ = None;
                let mut created_at__ = None;
                let mut network__ = None;
                let mut linux__ = None;
                let mut labels__ = None;
                let mut annotations__ = None;
                let mut runtime_handler__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Id => {
                            if id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("id"));
                            }
                            id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Metadata => {
                            if metadata__.is_some() {
                                return Err(serde::de::Error::duplicate_field("metadata"));
                            }
                            metadata__ = map_.next_value()?;
                        }
                        GeneratedField::State => {
                            if state__.is_some() {
                                return Err(serde::de::Error::duplicate_field("state"));
                            }
                            state__ = Some(map_.next_value::<PodSandboxState>()? as i32);
                        }
                        GeneratedField::CreatedAt => {
                            if created_at__.is_some() {
                                return Err(serde::de::Error::duplicate_field("createdAt"));
                            }
                            created_at__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::Network => {
                            if network__.is_some() {
                                return Err(serde::de::Error::duplicate_field("network"));
                            }
                            network__ = map_.next_value()?;
                        }
                        GeneratedField::Linux => {
                            if linux__.is_some() {
                                return Err(serde::de::Error::duplicate_field("linux"));
                            }
                            linux__ = map_.next_value()?;
                        }
                        GeneratedField::Labels => {
                            if labels__.is_some() {
                                return Err(serde::de::Error::duplicate_field("labels"));
                            }
                            labels__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::Annotations => {
                            if annotations__.is_some() {
                                return Err(serde::de::Error::duplicate_field("annotations"));
                            }
                            annotations__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::RuntimeHandler => {
                            if runtime_handler__.is_some() {
                                return Err(serde::de::Error::duplicate_field("runtimeHandler"));
                            }
                            runtime_handler__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PodSandboxStatus {
                    id: id__.unwrap_or_default(),
                    metadata: metadata__,
                    state: state__.unwrap_or_default(),
                    created_at: created_at__.unwrap_or_default(),
                    network: network__,
                    linux: linux__,
                    labels: labels__.unwrap_or_default(),
                    annotations: annotations__.unwrap_or_default(),
                    runtime_handler: runtime_handler__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PodSandboxStatus", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PodSandboxStatusRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PodSandboxStatusRequest", len)?;
        if true {
            struct_ser.serialize_field("podSandboxId", &self.pod_sandbox_id)?;
        }
        if true {
            struct_ser.serialize_field("verbose", &self.verbose)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PodSandboxStatusRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "pod_sandbox_id",
            "podSandboxId",
            "verbose",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            PodSandboxId,
            Verbose,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "podSandboxId" | "pod_sandbox_id" => Ok(GeneratedField::PodSandboxId),
                            "verbose" => Ok(GeneratedField::Verbose),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PodSandboxStatusRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PodSandboxStatusRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PodSandboxStatusRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut pod_sandbox_id__ = None;
                let mut verbose__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::PodSandboxId => {
                            if pod_sandbox_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("podSandboxId"));
                            }
                            pod_sandbox_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Verbose => {
                            if verbose__.is_some() {
                                return Err(serde::de::Error::duplicate_field("verbose"));
                            }
                            verbose__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PodSandboxStatusRequest {
                    pod_sandbox_id: pod_sandbox_id__.unwrap_or_default(),
                    verbose: verbose__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PodSandboxStatusRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PodSandboxStatusResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PodSandboxStatusResponse", len)?;
        if let Some(v) = self.status.as_ref() {
            struct_ser.serialize_field("status", v)?;
        }
        if true {
            struct_ser.serialize_field("info", &self.info)?;
        }
        if true {
            struct_ser.serialize_field("containersStatuses", &self.containers_statuses)?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("timestamp", ToString::to_string(&self.timestamp).as_str())?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PodSandboxStatusResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "status",
            "info",
            "containers_statuses",
            "containersStatuses",
            "timestamp",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Status,
            Info,
            ContainersStatuses,
            Timestamp,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "status" => Ok(GeneratedField::Status),
                            "info" => Ok(GeneratedField::Info),
                            "containersStatuses" | "containers_statuses" => Ok(GeneratedField::ContainersStatuses),
                            "timestamp" => Ok(GeneratedField::Timestamp),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PodSandboxStatusResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PodSandboxStatusResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PodSandboxStatusResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut status__ = None;
                let mut info__ = None;
                let mut containers_statuses__ = None;
                let mut timestamp__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Status => {
                            if status__.is_some() {
                                return Err(serde::de::Error::duplicate_field("status"));
                            }
                            status__ = map_.next_value()?;
                        }
                        GeneratedField::Info => {
                            if info__.is_some() {
                                return Err(serde::de::Error::duplicate_field("info"));
                            }
                            info__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::ContainersStatuses => {
                            if containers_statuses__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containersStatuses"));
                            }
                            containers_statuses__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Timestamp => {
                            if timestamp__.is_some() {
                                return Err(serde::de::Error::duplicate_field("timestamp"));
                            }
                            timestamp__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PodSandboxStatusResponse {
                    status: status__,
                    info: info__.unwrap_or_default(),
                    containers_statuses: containers_statuses__.unwrap_or_default(),
                    timestamp: timestamp__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PodSandboxStatusResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PortForwardRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PortForwardRequest", len)?;
        if true {
            struct_ser.serialize_field("podSandboxId", &self.pod_sandbox_id)?;
        }
        if true {
            struct_ser.serialize_field("port", &self.port)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PortForwardRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "pod_sandbox_id",
            "podSandboxId",
            "port",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            PodSandboxId,
            Port,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "podSandboxId" | "pod_sandbox_id" => Ok(GeneratedField::PodSandboxId),
                            "port" => Ok(GeneratedField::Port),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PortForwardRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PortForwardRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PortForwardRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut pod_sandbox_id__ = None;
                let mut port__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::PodSandboxId => {
                            if pod_sandbox_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("podSandboxId"));
                            }
                            pod_sandbox_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Port => {
                            if port__.is_some() {
                                return Err(serde::de::Error::duplicate_field("port"));
                            }
                            port__ = 
                                Some(map_.next_value::<Vec<::pbjson::private::NumberDeserialize<_>>>()?
                                    .into_iter().map(|x| x.0).collect())
                            ;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PortForwardRequest {
                    pod_sandbox_id: pod_sandbox_id__.unwrap_or_default(),
                    port: port__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PortForwardRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PortForwardResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PortForwardResponse", len)?;
        if true {
            struct_ser.serialize_field("url", &self.url)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PortForwardResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "url",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Url,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "url" => Ok(GeneratedField::Url),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PortForwardResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PortForwardResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PortForwardResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut url__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Url => {
                            if url__.is_some() {
                                return Err(serde::de::Error::duplicate_field("url"));
                            }
                            url__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PortForwardResponse {
                    url: url__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PortForwardResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PortMapping {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PortMapping", len)?;
        if true {
            let v = Protocol::try_from(self.protocol)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.protocol)))?;
            struct_ser.serialize_field("protocol", &v)?;
        }
        if true {
            struct_ser.serialize_field("containerPort", &self.container_port)?;
        }
        if true {
            struct_ser.serialize_field("hostPort", &self.host_port)?;
        }
        if true {
            struct_ser.serialize_field("hostIp", &self.host_ip)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PortMapping {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "protocol",
            "container_port",
            "containerPort",
            "host_port",
            "hostPort",
            "host_ip",
            "hostIp",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Protocol,
            ContainerPort,
            HostPort,
            HostIp,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "protocol" => Ok(GeneratedField::Protocol),
                            "containerPort" | "container_port" => Ok(GeneratedField::ContainerPort),
                            "hostPort" | "host_port" => Ok(GeneratedField::HostPort),
                            "hostIp" | "host_ip" => Ok(GeneratedField::HostIp),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PortMapping;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PortMapping")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PortMapping, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut protocol__ = None;
                let mut container_port__ = None;
                let mut host_port__ = None;
                let mut host_ip__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Protocol => {
                            if protocol__.is_some() {
                                return Err(serde::de::Error::duplicate_field("protocol"));
                            }
                            protocol__ = Some(map_.next_value::<Protocol>()? as i32);
                        }
                        GeneratedField::ContainerPort => {
                            if container_port__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containerPort"));
                            }
                            container_port__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::HostPort => {
                            if host_port__.is_some() {
                                return Err(serde::de::Error::duplicate_field("hostPort"));
                            }
                            host_port__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::HostIp => {
                            if host_ip__.is_some() {
                                return Err(serde::de::Error::duplicate_field("hostIp"));
                            }
                            host_ip__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PortMapping {
                    protocol: protocol__.unwrap_or_default(),
                    container_port: container_port__.unwrap_or_default(),
                    host_port: host_port__.unwrap_or_default(),
                    host_ip: host_ip__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PortMapping", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ProcessUsage {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ProcessUsage", len)?;
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("timestamp", ToString::to_string(&self.timestamp).as_str())?;
        }
        if let Some(v) = self.process_count.as_ref() {
            struct_ser.serialize_field("processCount", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ProcessUsage {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "timestamp",
            "process_count",
            "processCount",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Timestamp,
            ProcessCount,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "timestamp" => Ok(GeneratedField::Timestamp),
                            "processCount" | "process_count" => Ok(GeneratedField::ProcessCount),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ProcessUsage;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ProcessUsage")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ProcessUsage, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut timestamp__ = None;
                let mut process_count__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Timestamp => {
                            if timestamp__.is_some() {
                                return Err(serde::de::Error::duplicate_field("timestamp"));
                            }
                            timestamp__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::ProcessCount => {
                            if process_count__.is_some() {
                                return Err(serde::de::Error::duplicate_field("processCount"));
                            }
                            process_count__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ProcessUsage {
                    timestamp: timestamp__.unwrap_or_default(),
                    process_count: process_count__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ProcessUsage", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for Protocol {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        let variant = match self {
            Self::Tcp => "TCP",
            Self::Udp => "UDP",
            Self::Sctp => "SCTP",
        };
        serializer.serialize_str(variant)
    }
}
impl<'de> serde::Deserialize<'de> for Protocol {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "TCP",
            "UDP",
            "SCTP",
        ];

        struct GeneratedVisitor;

        impl serde::de::Visitor<'_> for GeneratedVisitor {
            type Value = Protocol;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(formatter, "expected one of: {:?}", &FIELDS)
            }

            fn visit_i64<E>(self, v: i64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Signed(v), &self)
                    })
            }

            fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Unsigned(v), &self)
                    })
            }

            fn visit_str<E>(self, value: &str) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                match value {
                    "TCP" => Ok(Protocol::Tcp),
                    "UDP" => Ok(Protocol::Udp),
                    "SCTP" => Ok(Protocol::Sctp),
                    _ => Err(serde::de::Error::unknown_variant(value, FIELDS)),
                }
            }
        }
        deserializer.deserialize_any(GeneratedVisitor)
    }
}
impl serde::Serialize for PsiData {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PsiData", len)?;
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("Total", ToString::to_string(&self.total).as_str())?;
        }
        if true {
            struct_ser.serialize_field("Avg10", &self.avg10)?;
        }
        if true {
            struct_ser.serialize_field("Avg60", &self.avg60)?;
        }
        if true {
            struct_ser.serialize_field("Avg300", &self.avg300)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PsiData {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "Total",
            "Avg10",
            "Avg60",
            "Avg300",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Total,
            Avg10,
            Avg60,
            Avg300,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "Total" => Ok(GeneratedField::Total),
                            "Avg10" => Ok(GeneratedField::Avg10),
                            "Avg60" => Ok(GeneratedField::Avg60),
                            "Avg300" => Ok(GeneratedField::Avg300),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PsiData;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PsiData")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PsiData, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut total__ = None;
                let mut avg10__ = None;
                let mut avg60__ = None;
                let mut avg300__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Total => {
                            if total__.is_some() {
                                return Err(serde::de::Error::duplicate_field("Total"));
                            }
                            total__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::Avg10 => {
                            if avg10__.is_some() {
                                return Err(serde::de::Error::duplicate_field("Avg10"));
                            }
                            avg10__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::Avg60 => {
                            if avg60__.is_some() {
                                return Err(serde::de::Error::duplicate_field("Avg60"));
                            }
                            avg60__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::Avg300 => {
                            if avg300__.is_some() {
                                return Err(serde::de::Error::duplicate_field("Avg300"));
                            }
                            avg300__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PsiData {
                    total: total__.unwrap_or_default(),
                    avg10: avg10__.unwrap_or_default(),
                    avg60: avg60__.unwrap_or_default(),
                    avg300: avg300__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PsiData", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PsiStats {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PsiStats", len)?;
        if let Some(v) = self.full.as_ref() {
            struct_ser.serialize_field("Full", v)?;
        }
        if let Some(v) = self.some.as_ref() {
            struct_ser.serialize_field("Some", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PsiStats {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "Full",
            "Some",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Full,
            Some,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "Full" => Ok(GeneratedField::Full),
                            "Some" => Ok(GeneratedField::Some),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PsiStats;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PsiStats")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PsiStats, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut full__ = None;
                let mut some__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Full => {
                            if full__.is_some() {
                                return Err(serde::de::Error::duplicate_field("Full"));
                            }
                            full__ = map_.next_value()?;
                        }
                        GeneratedField::Some => {
                            if some__.is_some() {
                                return Err(serde::de::Error::duplicate_field("Some"));
                            }
                            some__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PsiStats {
                    full: full__,
                    some: some__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PsiStats", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PullImageRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PullImageRequest", len)?;
        if let Some(v) = self.image.as_ref() {
            struct_ser.serialize_field("image", v)?;
        }
        if let Some(v) = self.auth.as_ref() {
            struct_ser.serialize_field("auth", v)?;
        }
        if let Some(v) = self.sandbox_config.as_ref() {
            struct_ser.serialize_field("sandboxConfig", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PullImageRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "image",
            "auth",
            "sandbox_config",
            "sandboxConfig",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Image,
            Auth,
            SandboxConfig,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "image" => Ok(GeneratedField::Image),
                            "auth" => Ok(GeneratedField::Auth),
                            "sandboxConfig" | "sandbox_config" => Ok(GeneratedField::SandboxConfig),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PullImageRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PullImageRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PullImageRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut image__ = None;
                let mut auth__ = None;
                let mut sandbox_config__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Image => {
                            if image__.is_some() {
                                return Err(serde::de::Error::duplicate_field("image"));
                            }
                            image__ = map_.next_value()?;
                        }
                        GeneratedField::Auth => {
                            if auth__.is_some() {
                                return Err(serde::de::Error::duplicate_field("auth"));
                            }
                            auth__ = map_.next_value()?;
                        }
                        GeneratedField::SandboxConfig => {
                            if sandbox_config__.is_some() {
                                return Err(serde::de::Error::duplicate_field("sandboxConfig"));
                            }
                            sandbox_config__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PullImageRequest {
                    image: image__,
                    auth: auth__,
                    sandbox_config: sandbox_config__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PullImageRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for PullImageResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.PullImageResponse", len)?;
        if true {
            struct_ser.serialize_field("imageRef", &self.image_ref)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for PullImageResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "image_ref",
            "imageRef",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            ImageRef,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "imageRef" | "image_ref" => Ok(GeneratedField::ImageRef),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = PullImageResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.PullImageResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<PullImageResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut image_ref__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::ImageRef => {
                            if image_ref__.is_some() {
                                return Err(serde::de::Error::duplicate_field("imageRef"));
                            }
                            image_ref__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(PullImageResponse {
                    image_ref: image_ref__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.PullImageResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RemoveContainerRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.RemoveContainerRequest", len)?;
        if true {
            struct_ser.serialize_field("containerId", &self.container_id)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RemoveContainerRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "container_id",
            "containerId",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            ContainerId,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "containerId" | "container_id" => Ok(GeneratedField::ContainerId),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RemoveContainerRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.RemoveContainerRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RemoveContainerRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut container_id__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::ContainerId => {
                            if container_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containerId"));
                            }
                            container_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(RemoveContainerRequest {
                    container_id: container_id__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.RemoveContainerRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RemoveContainerResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let len = 0;
        let struct_ser = serializer.serialize_struct("runtime.v1.RemoveContainerResponse", len)?;
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RemoveContainerResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                            Ok(GeneratedField::__SkipField__)
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RemoveContainerResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.RemoveContainerResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RemoveContainerResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                while map_.next_key::<GeneratedField>()?.is_some() {
                    let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(RemoveContainerResponse {
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.RemoveContainerResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RemoveImageRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.RemoveImageRequest", len)?;
        if let Some(v) = self.image.as_ref() {
            struct_ser.serialize_field("image", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RemoveImageRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "image",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Image,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "image" => Ok(GeneratedField::Image),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RemoveImageRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.RemoveImageRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RemoveImageRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut image__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Image => {
                            if image__.is_some() {
                                return Err(serde::de::Error::duplicate_field("image"));
                            }
                            image__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(RemoveImageRequest {
                    image: image__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.RemoveImageRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RemoveImageResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let len = 0;
        let struct_ser = serializer.serialize_struct("runtime.v1.RemoveImageResponse", len)?;
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RemoveImageResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                            Ok(GeneratedField::__SkipField__)
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RemoveImageResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.RemoveImageResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RemoveImageResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                while map_.next_key::<GeneratedField>()?.is_some() {
                    let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(RemoveImageResponse {
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.RemoveImageResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RemovePodSandboxRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.RemovePodSandboxRequest", len)?;
        if true {
            struct_ser.serialize_field("podSandboxId", &self.pod_sandbox_id)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RemovePodSandboxRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "pod_sandbox_id",
            "podSandboxId",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            PodSandboxId,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "podSandboxId" | "pod_sandbox_id" => Ok(GeneratedField::PodSandboxId),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RemovePodSandboxRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.RemovePodSandboxRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RemovePodSandboxRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut pod_sandbox_id__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::PodSandboxId => {
                            if pod_sandbox_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("podSandboxId"));
                            }
                            pod_sandbox_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(RemovePodSandboxRequest {
                    pod_sandbox_id: pod_sandbox_id__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.RemovePodSandboxRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RemovePodSandboxResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let len = 0;
        let struct_ser = serializer.serialize_struct("runtime.v1.RemovePodSandboxResponse", len)?;
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RemovePodSandboxResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                            Ok(GeneratedField::__SkipField__)
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RemovePodSandboxResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.RemovePodSandboxResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RemovePodSandboxResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                while map_.next_key::<GeneratedField>()?.is_some() {
                    let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(RemovePodSandboxResponse {
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.RemovePodSandboxResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ReopenContainerLogRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.ReopenContainerLogRequest", len)?;
        if true {
            struct_ser.serialize_field("containerId", &self.container_id)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ReopenContainerLogRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "container_id",
            "containerId",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            ContainerId,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "containerId" | "container_id" => Ok(GeneratedField::ContainerId),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ReopenContainerLogRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ReopenContainerLogRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ReopenContainerLogRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut container_id__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::ContainerId => {
                            if container_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containerId"));
                            }
                            container_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(ReopenContainerLogRequest {
                    container_id: container_id__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ReopenContainerLogRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for ReopenContainerLogResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let len = 0;
        let struct_ser = serializer.serialize_struct("runtime.v1.ReopenContainerLogResponse", len)?;
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for ReopenContainerLogResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                            Ok(GeneratedField::__SkipField__)
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = ReopenContainerLogResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.ReopenContainerLogResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<ReopenContainerLogResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                while map_.next_key::<GeneratedField>()?.is_some() {
                    let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(ReopenContainerLogResponse {
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.ReopenContainerLogResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RunPodSandboxRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.RunPodSandboxRequest", len)?;
        if let Some(v) = self.config.as_ref() {
            struct_ser.serialize_field("config", v)?;
        }
        if true {
            struct_ser.serialize_field("runtimeHandler", &self.runtime_handler)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RunPodSandboxRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "config",
            "runtime_handler",
            "runtimeHandler",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Config,
            RuntimeHandler,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "config" => Ok(GeneratedField::Config),
                            "runtimeHandler" | "runtime_handler" => Ok(GeneratedField::RuntimeHandler),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RunPodSandboxRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.RunPodSandboxRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RunPodSandboxRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut config__ = None;
                let mut runtime_handler__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Config => {
                            if config__.is_some() {
                                return Err(serde::de::Error::duplicate_field("config"));
                            }
                            config__ = map_.next_value()?;
                        }
                        GeneratedField::RuntimeHandler => {
                            if runtime_handler__.is_some() {
                                return Err(serde::de::Error::duplicate_field("runtimeHandler"));
                            }
                            runtime_handler__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(RunPodSandboxRequest {
                    config: config__,
                    runtime_handler: runtime_handler__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.RunPodSandboxRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RunPodSandboxResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.RunPodSandboxResponse", len)?;
        if true {
            struct_ser.serialize_field("podSandboxId", &self.pod_sandbox_id)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RunPodSandboxResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "pod_sandbox_id",
            "podSandboxId",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            PodSandboxId,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "podSandboxId" | "pod_sandbox_id" => Ok(GeneratedField::PodSandboxId),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RunPodSandboxResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.RunPodSandboxResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RunPodSandboxResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut pod_sandbox_id__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::PodSandboxId => {
                            if pod_sandbox_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("podSandboxId"));
                            }
                            pod_sandbox_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(RunPodSandboxResponse {
                    pod_sandbox_id: pod_sandbox_id__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.RunPodSandboxResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RuntimeCondition {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.RuntimeCondition", len)?;
        if true {
            struct_ser.serialize_field("type", &self.r#type)?;
        }
        if true {
            struct_ser.serialize_field("status", &self.status)?;
        }
        if true {
            struct_ser.serialize_field("reason", &self.reason)?;
        }
        if true {
            struct_ser.serialize_field("message", &self.message)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RuntimeCondition {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "type",
            "status",
            "reason",
            "message",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Type,
            Status,
            Reason,
            Message,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "type" => Ok(GeneratedField::Type),
                            "status" => Ok(GeneratedField::Status),
                            "reason" => Ok(GeneratedField::Reason),
                            "message" => Ok(GeneratedField::Message),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RuntimeCondition;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.RuntimeCondition")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RuntimeCondition, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut r#type__ = None;
                let mut status__ = None;
                let mut reason__ = None;
                let mut message__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Type => {
                            if r#type__.is_some() {
                                return Err(serde::de::Error::duplicate_field("type"));
                            }
                            r#type__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Status => {
                            if status__.is_some() {
                                return Err(serde::de::Error::duplicate_field("status"));
                            }
                            status__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Reason => {
                            if reason__.is_some() {
                                return Err(serde::de::Error::duplicate_field("reason"));
                            }
                            reason__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Message => {
                            if message__.is_some() {
                                return Err(serde::de::Error::duplicate_field("message"));
                            }
                            message__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(RuntimeCondition {
                    r#type: r#type__.unwrap_or_default(),
                    status: status__.unwrap_or_default(),
                    reason: reason__.unwrap_or_default(),
                    message: message__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.RuntimeCondition", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RuntimeConfig {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.RuntimeConfig", len)?;
        if let Some(v) = self.network_config.as_ref() {
            struct_ser.serialize_field("networkConfig", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RuntimeConfig {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "network_config",
            "networkConfig",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            NetworkConfig,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "networkConfig" | "network_config" => Ok(GeneratedField::NetworkConfig),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RuntimeConfig;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.RuntimeConfig")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RuntimeConfig, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut network_config__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::NetworkConfig => {
                            if network_config__.is_some() {
                                return Err(serde::de::Error::duplicate_field("networkConfig"));
                            }
                            network_config__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(RuntimeConfig {
                    network_config: network_config__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.RuntimeConfig", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RuntimeConfigRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let len = 0;
        let struct_ser = serializer.serialize_struct("runtime.v1.RuntimeConfigRequest", len)?;
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RuntimeConfigRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                            Ok(GeneratedField::__SkipField__)
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RuntimeConfigRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.RuntimeConfigRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RuntimeConfigRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                while map_.next_key::<GeneratedField>()?.is_some() {
                    let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(RuntimeConfigRequest {
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.RuntimeConfigRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RuntimeConfigResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.RuntimeConfigResponse", len)?;
        if let Some(v) = self.linux.as_ref() {
            struct_ser.serialize_field("linux", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RuntimeConfigResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "linux",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Linux,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "linux" => Ok(GeneratedField::Linux),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RuntimeConfigResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.RuntimeConfigResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RuntimeConfigResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut linux__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Linux => {
                            if linux__.is_some() {
                                return Err(serde::de::Error::duplicate_field("linux"));
                            }
                            linux__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(RuntimeConfigResponse {
                    linux: linux__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.RuntimeConfigResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RuntimeFeatures {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.RuntimeFeatures", len)?;
        if true {
            struct_ser.serialize_field("supplementalGroupsPolicy", &self.supplemental_groups_policy)?;
        }
        if true {
            struct_ser.serialize_field("userNamespacesHostNetwork", &self.user_namespaces_host_network)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RuntimeFeatures {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "supplemental_groups_policy",
            "supplementalGroupsPolicy",
            "user_namespaces_host_network",
            "userNamespacesHostNetwork",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            SupplementalGroupsPolicy,
            UserNamespacesHostNetwork,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "supplementalGroupsPolicy" | "supplemental_groups_policy" => Ok(GeneratedField::SupplementalGroupsPolicy),
                            "userNamespacesHostNetwork" | "user_namespaces_host_network" => Ok(GeneratedField::UserNamespacesHostNetwork),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RuntimeFeatures;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.RuntimeFeatures")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RuntimeFeatures, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut supplemental_groups_policy__ = None;
                let mut user_namespaces_host_network__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::SupplementalGroupsPolicy => {
                            if supplemental_groups_policy__.is_some() {
                                return Err(serde::de::Error::duplicate_field("supplementalGroupsPolicy"));
                            }
                            supplemental_groups_policy__ = Some(map_.next_value()?);
                        }
                        GeneratedField::UserNamespacesHostNetwork => {
                            if user_namespaces_host_network__.is_some() {
                                return Err(serde::de::Error::duplicate_field("userNamespacesHostNetwork"));
                            }
                            user_namespaces_host_network__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(RuntimeFeatures {
                    supplemental_groups_policy: supplemental_groups_policy__.unwrap_or_default(),
                    user_namespaces_host_network: user_namespaces_host_network__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.RuntimeFeatures", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RuntimeHandler {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.RuntimeHandler", len)?;
        if true {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if let Some(v) = self.features.as_ref() {
            struct_ser.serialize_field("features", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RuntimeHandler {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "name",
            "features",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Name,
            Features,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "name" => Ok(GeneratedField::Name),
                            "features" => Ok(GeneratedField::Features),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RuntimeHandler;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.RuntimeHandler")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RuntimeHandler, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut name__ = None;
                let mut features__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Features => {
                            if features__.is_some() {
                                return Err(serde::de::Error::duplicate_field("features"));
                            }
                            features__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(RuntimeHandler {
                    name: name__.unwrap_or_default(),
                    features: features__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.RuntimeHandler", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RuntimeHandlerFeatures {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.RuntimeHandlerFeatures", len)?;
        if true {
            struct_ser.serialize_field("recursiveReadOnlyMounts", &self.recursive_read_only_mounts)?;
        }
        if true {
            struct_ser.serialize_field("userNamespaces", &self.user_namespaces)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RuntimeHandlerFeatures {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "recursive_read_only_mounts",
            "recursiveReadOnlyMounts",
            "user_namespaces",
            "userNamespaces",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            RecursiveReadOnlyMounts,
            UserNamespaces,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "recursiveReadOnlyMounts" | "recursive_read_only_mounts" => Ok(GeneratedField::RecursiveReadOnlyMounts),
                            "userNamespaces" | "user_namespaces" => Ok(GeneratedField::UserNamespaces),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RuntimeHandlerFeatures;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.RuntimeHandlerFeatures")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RuntimeHandlerFeatures, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut recursive_read_only_mounts__ = None;
                let mut user_namespaces__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::RecursiveReadOnlyMounts => {
                            if recursive_read_only_mounts__.is_some() {
                                return Err(serde::de::Error::duplicate_field("recursiveReadOnlyMounts"));
                            }
                            recursive_read_only_mounts__ = Some(map_.next_value()?);
                        }
                        GeneratedField::UserNamespaces => {
                            if user_namespaces__.is_some() {
                                return Err(serde::de::Error::duplicate_field("userNamespaces"));
                            }
                            user_namespaces__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(RuntimeHandlerFeatures {
                    recursive_read_only_mounts: recursive_read_only_mounts__.unwrap_or_default(),
                    user_namespaces: user_namespaces__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.RuntimeHandlerFeatures", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for RuntimeStatus {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.RuntimeStatus", len)?;
        if true {
            struct_ser.serialize_field("conditions", &self.conditions)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for RuntimeStatus {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "conditions",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Conditions,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "conditions" => Ok(GeneratedField::Conditions),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = RuntimeStatus;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.RuntimeStatus")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<RuntimeStatus, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut conditions__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Conditions => {
                            if conditions__.is_some() {
                                return Err(serde::de::Error::duplicate_field("conditions"));
                            }
                            conditions__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(RuntimeStatus {
                    conditions: conditions__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.RuntimeStatus", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for SeLinuxOption {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.SELinuxOption", len)?;
        if true {
            struct_ser.serialize_field("user", &self.user)?;
        }
        if true {
            struct_ser.serialize_field("role", &self.role)?;
        }
        if true {
            struct_ser.serialize_field("type", &self.r#type)?;
        }
        if true {
            struct_ser.serialize_field("level", &self.level)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for SeLinuxOption {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "user",
            "role",
            "type",
            "level",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            User,
            Role,
            Type,
            Level,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "user" => Ok(GeneratedField::User),
                            "role" => Ok(GeneratedField::Role),
                            "type" => Ok(GeneratedField::Type),
                            "level" => Ok(GeneratedField::Level),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = SeLinuxOption;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.SELinuxOption")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<SeLinuxOption, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut user__ = None;
                let mut role__ = None;
                let mut r#type__ = None;
                let mut level__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::User => {
                            if user__.is_some() {
                                return Err(serde::de::Error::duplicate_field("user"));
                            }
                            user__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Role => {
                            if role__.is_some() {
                                return Err(serde::de::Error::duplicate_field("role"));
                            }
                            role__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Type => {
                            if r#type__.is_some() {
                                return Err(serde::de::Error::duplicate_field("type"));
                            }
                            r#type__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Level => {
                            if level__.is_some() {
                                return Err(serde::de::Error::duplicate_field("level"));
                            }
                            level__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(SeLinuxOption {
                    user: user__.unwrap_or_default(),
                    role: role__.unwrap_or_default(),
                    r#type: r#type__.unwrap_or_default(),
                    level: level__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.SELinuxOption", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for SecurityProfile {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.SecurityProfile", len)?;
        if true {
            let v = security_profile::ProfileType::try_from(self.profile_type)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.profile_type)))?;
            struct_ser.serialize_field("profileType", &v)?;
        }
        if true {
            struct_ser.serialize_field("localhostRef", &self.localhost_ref)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for SecurityProfile {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "profile_type",
            "profileType",
            "localhost_ref",
            "localhostRef",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            ProfileType,
            LocalhostRef,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "profileType" | "profile_type" => Ok(GeneratedField::ProfileType),
                            "localhostRef" | "localhost_ref" => Ok(GeneratedField::LocalhostRef),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = SecurityProfile;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.SecurityProfile")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<SecurityProfile, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut profile_type__ = None;
                let mut localhost_ref__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::ProfileType => {
                            if profile_type__.is_some() {
                                return Err(serde::de::Error::duplicate_field("profileType"));
                            }
                            profile_type__ = Some(map_.next_value::<security_profile::ProfileType>()? as i32);
                        }
                        GeneratedField::LocalhostRef => {
                            if localhost_ref__.is_some() {
                                return Err(serde::de::Error::duplicate_field("localhostRef"));
                            }
                            localhost_ref__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(SecurityProfile {
                    profile_type: profile_type__.unwrap_or_default(),
                    localhost_ref: localhost_ref__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.SecurityProfile", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for security_profile::ProfileType {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        let variant = match self {
            Self::RuntimeDefault => "RuntimeDefault",
            Self::Unconfined => "Unconfined",
            Self::Localhost => "Localhost",
        };
        serializer.serialize_str(variant)
    }
}
impl<'de> serde::Deserialize<'de> for security_profile::ProfileType {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "RuntimeDefault",
            "Unconfined",
            "Localhost",
        ];

        struct GeneratedVisitor;

        impl serde::de::Visitor<'_> for GeneratedVisitor {
            type Value = security_profile::ProfileType;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(formatter, "expected one of: {:?}", &FIELDS)
            }

            fn visit_i64<E>(self, v: i64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Signed(v), &self)
                    })
            }

            fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Unsigned(v), &self)
                    })
            }

            fn visit_str<E>(self, value: &str) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                match value {
                    "RuntimeDefault" => Ok(security_profile::ProfileType::RuntimeDefault),
                    "Unconfined" => Ok(security_profile::ProfileType::Unconfined),
                    "Localhost" => Ok(security_profile::ProfileType::Localhost),
                    _ => Err(serde::de::Error::unknown_variant(value, FIELDS)),
                }
            }
        }
        deserializer.deserialize_any(GeneratedVisitor)
    }
}
impl serde::Serialize for Signal {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        let variant = match self {
            Self::RuntimeDefault => "RUNTIME_DEFAULT",
            Self::Sigabrt => "SIGABRT",
            Self::Sigalrm => "SIGALRM",
            Self::Sigbus => "SIGBUS",
            Self::Sigchld => "SIGCHLD",
            Self::Sigcld => "SIGCLD",
            Self::Sigcont => "SIGCONT",
            Self::Sigfpe => "SIGFPE",
            Self::Sighup => "SIGHUP",
            Self::Sigill => "SIGILL",
            Self::Sigint => "SIGINT",
            Self::Sigio => "SIGIO",
            Self::Sigiot => "SIGIOT",
            Self::Sigkill => "SIGKILL",
            Self::Sigpipe => "SIGPIPE",
            Self::Sigpoll => "SIGPOLL",
            Self::Sigprof => "SIGPROF",
            Self::Sigpwr => "SIGPWR",
            Self::Sigquit => "SIGQUIT",
            Self::Sigsegv => "SIGSEGV",
            Self::Sigstkflt => "SIGSTKFLT",
            Self::Sigstop => "SIGSTOP",
            Self::Sigsys => "SIGSYS",
            Self::Sigterm => "SIGTERM",
            Self::Sigtrap => "SIGTRAP",
            Self::Sigtstp => "SIGTSTP",
            Self::Sigttin => "SIGTTIN",
            Self::Sigttou => "SIGTTOU",
            Self::Sigurg => "SIGURG",
            Self::Sigusr1 => "SIGUSR1",
            Self::Sigusr2 => "SIGUSR2",
            Self::Sigvtalrm => "SIGVTALRM",
            Self::Sigwinch => "SIGWINCH",
            Self::Sigxcpu => "SIGXCPU",
            Self::Sigxfsz => "SIGXFSZ",
            Self::Sigrtmin => "SIGRTMIN",
            Self::Sigrtminplus1 => "SIGRTMINPLUS1",
            Self::Sigrtminplus2 => "SIGRTMINPLUS2",
            Self::Sigrtminplus3 => "SIGRTMINPLUS3",
            Self::Sigrtminplus4 => "SIGRTMINPLUS4",
            Self::Sigrtminplus5 => "SIGRTMINPLUS5",
            Self::Sigrtminplus6 => "SIGRTMINPLUS6",
            Self::Sigrtminplus7 => "SIGRTMINPLUS7",
            Self::Sigrtminplus8 => "SIGRTMINPLUS8",
            Self::Sigrtminplus9 => "SIGRTMINPLUS9",
            Self::Sigrtminplus10 => "SIGRTMINPLUS10",
            Self::Sigrtminplus11 => "SIGRTMINPLUS11",
            Self::Sigrtminplus12 => "SIGRTMINPLUS12",
            Self::Sigrtminplus13 => "SIGRTMINPLUS13",
            Self::Sigrtminplus14 => "SIGRTMINPLUS14",
            Self::Sigrtminplus15 => "SIGRTMINPLUS15",
            Self::Sigrtmaxminus14 => "SIGRTMAXMINUS14",
            Self::Sigrtmaxminus13 => "SIGRTMAXMINUS13",
            Self::Sigrtmaxminus12 => "SIGRTMAXMINUS12",
            Self::Sigrtmaxminus11 => "SIGRTMAXMINUS11",
            Self::Sigrtmaxminus10 => "SIGRTMAXMINUS10",
            Self::Sigrtmaxminus9 => "SIGRTMAXMINUS9",
            Self::Sigrtmaxminus8 => "SIGRTMAXMINUS8",
            Self::Sigrtmaxminus7 => "SIGRTMAXMINUS7",
            Self::Sigrtmaxminus6 => "SIGRTMAXMINUS6",
            Self::Sigrtmaxminus5 => "SIGRTMAXMINUS5",
            Self::Sigrtmaxminus4 => "SIGRTMAXMINUS4",
            Self::Sigrtmaxminus3 => "SIGRTMAXMINUS3",
            Self::Sigrtmaxminus2 => "SIGRTMAXMINUS2",
            Self::Sigrtmaxminus1 => "SIGRTMAXMINUS1",
            Self::Sigrtmax => "SIGRTMAX",
        };
        serializer.serialize_str(variant)
    }
}
impl<'de> serde::Deserialize<'de> for Signal {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "RUNTIME_DEFAULT",
            "SIGABRT",
            "SIGALRM",
            "SIGBUS",
            "SIGCHLD",
            "SIGCLD",
            "SIGCONT",
            "SIGFPE",
            "SIGHUP",
            "SIGILL",
            "SIGINT",
            "SIGIO",
            "SIGIOT",
            "SIGKILL",
            "SIGPIPE",
            "SIGPOLL",
            "SIGPROF",
            "SIGPWR",
            "SIGQUIT",
            "SIGSEGV",
            "SIGSTKFLT",
            "SIGSTOP",
            "SIGSYS",
            "SIGTERM",
            "SIGTRAP",
            "SIGTSTP",
            "SIGTTIN",
            "SIGTTOU",
            "SIGURG",
            "SIGUSR1",
            "SIGUSR2",
            "SIGVTALRM",
            "SIGWINCH",
            "SIGXCPU",
            "SIGXFSZ",
            "SIGRTMIN",
            "SIGRTMINPLUS1",
            "SIGRTMINPLUS2",
            "SIGRTMINPLUS3",
            "SIGRTMINPLUS4",
            "SIGRTMINPLUS5",
            "SIGRTMINPLUS6",
            "SIGRTMINPLUS7",
            "SIGRTMINPLUS8",
            "SIGRTMINPLUS9",
            "SIGRTMINPLUS10",
            "SIGRTMINPLUS11",
            "SIGRTMINPLUS12",
            "SIGRTMINPLUS13",
            "SIGRTMINPLUS14",
            "SIGRTMINPLUS15",
            "SIGRTMAXMINUS14",
            "SIGRTMAXMINUS13",
            "SIGRTMAXMINUS12",
            "SIGRTMAXMINUS11",
            "SIGRTMAXMINUS10",
            "SIGRTMAXMINUS9",
            "SIGRTMAXMINUS8",
            "SIGRTMAXMINUS7",
            "SIGRTMAXMINUS6",
            "SIGRTMAXMINUS5",
            "SIGRTMAXMINUS4",
            "SIGRTMAXMINUS3",
            "SIGRTMAXMINUS2",
            "SIGRTMAXMINUS1",
            "SIGRTMAX",
        ];

        struct GeneratedVisitor;

        impl serde::de::Visitor<'_> for GeneratedVisitor {
            type Value = Signal;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(formatter, "expected one of: {:?}", &FIELDS)
            }

            fn visit_i64<E>(self, v: i64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Signed(v), &self)
                    })
            }

            fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Unsigned(v), &self)
                    })
            }

            fn visit_str<E>(self, value: &str) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                match value {
                    "RUNTIME_DEFAULT" => Ok(Signal::RuntimeDefault),
                    "SIGABRT" => Ok(Signal::Sigabrt),
                    "SIGALRM" => Ok(Signal::Sigalrm),
                    "SIGBUS" => Ok(Signal::Sigbus),
                    "SIGCHLD" => Ok(Signal::Sigchld),
                    "SIGCLD" => Ok(Signal::Sigcld),
                    "SIGCONT" => Ok(Signal::Sigcont),
                    "SIGFPE" => Ok(Signal::Sigfpe),
                    "SIGHUP" => Ok(Signal::Sighup),
                    "SIGILL" => Ok(Signal::Sigill),
                    "SIGINT" => Ok(Signal::Sigint),
                    "SIGIO" => Ok(Signal::Sigio),
                    "SIGIOT" => Ok(Signal::Sigiot),
                    "SIGKILL" => Ok(Signal::Sigkill),
                    "SIGPIPE" => Ok(Signal::Sigpipe),
                    "SIGPOLL" => Ok(Signal::Sigpoll),
                    "SIGPROF" => Ok(Signal::Sigprof),
                    "SIGPWR" => Ok(Signal::Sigpwr),
                    "SIGQUIT" => Ok(Signal::Sigquit),
                    "SIGSEGV" => Ok(Signal::Sigsegv),
                    "SIGSTKFLT" => Ok(Signal::Sigstkflt),
                    "SIGSTOP" => Ok(Signal::Sigstop),
                    "SIGSYS" => Ok(Signal::Sigsys),
                    "SIGTERM" => Ok(Signal::Sigterm),
                    "SIGTRAP" => Ok(Signal::Sigtrap),
                    "SIGTSTP" => Ok(Signal::Sigtstp),
                    "SIGTTIN" => Ok(Signal::Sigttin),
                    "SIGTTOU" => Ok(Signal::Sigttou),
                    "SIGURG" => Ok(Signal::Sigurg),
                    "SIGUSR1" => Ok(Signal::Sigusr1),
                    "SIGUSR2" => Ok(Signal::Sigusr2),
                    "SIGVTALRM" => Ok(Signal::Sigvtalrm),
                    "SIGWINCH" => Ok(Signal::Sigwinch),
                    "SIGXCPU" => Ok(Signal::Sigxcpu),
                    "SIGXFSZ" => Ok(Signal::Sigxfsz),
                    "SIGRTMIN" => Ok(Signal::Sigrtmin),
                    "SIGRTMINPLUS1" => Ok(Signal::Sigrtminplus1),
                    "SIGRTMINPLUS2" => Ok(Signal::Sigrtminplus2),
                    "SIGRTMINPLUS3" => Ok(Signal::Sigrtminplus3),
                    "SIGRTMINPLUS4" => Ok(Signal::Sigrtminplus4),
                    "SIGRTMINPLUS5" => Ok(Signal::Sigrtminplus5),
                    "SIGRTMINPLUS6" => Ok(Signal::Sigrtminplus6),
                    "SIGRTMINPLUS7" => Ok(Signal::Sigrtminplus7),
                    "SIGRTMINPLUS8" => Ok(Signal::Sigrtminplus8),
                    "SIGRTMINPLUS9" => Ok(Signal::Sigrtminplus9),
                    "SIGRTMINPLUS10" => Ok(Signal::Sigrtminplus10),
                    "SIGRTMINPLUS11" => Ok(Signal::Sigrtminplus11),
                    "SIGRTMINPLUS12" => Ok(Signal::Sigrtminplus12),
                    "SIGRTMINPLUS13" => Ok(Signal::Sigrtminplus13),
                    "SIGRTMINPLUS14" => Ok(Signal::Sigrtminplus14),
                    "SIGRTMINPLUS15" => Ok(Signal::Sigrtminplus15),
                    "SIGRTMAXMINUS14" => Ok(Signal::Sigrtmaxminus14),
                    "SIGRTMAXMINUS13" => Ok(Signal::Sigrtmaxminus13),
                    "SIGRTMAXMINUS12" => Ok(Signal::Sigrtmaxminus12),
                    "SIGRTMAXMINUS11" => Ok(Signal::Sigrtmaxminus11),
                    "SIGRTMAXMINUS10" => Ok(Signal::Sigrtmaxminus10),
                    "SIGRTMAXMINUS9" => Ok(Signal::Sigrtmaxminus9),
                    "SIGRTMAXMINUS8" => Ok(Signal::Sigrtmaxminus8),
                    "SIGRTMAXMINUS7" => Ok(Signal::Sigrtmaxminus7),
                    "SIGRTMAXMINUS6" => Ok(Signal::Sigrtmaxminus6),
                    "SIGRTMAXMINUS5" => Ok(Signal::Sigrtmaxminus5),
                    "SIGRTMAXMINUS4" => Ok(Signal::Sigrtmaxminus4),
                    "SIGRTMAXMINUS3" => Ok(Signal::Sigrtmaxminus3),
                    "SIGRTMAXMINUS2" => Ok(Signal::Sigrtmaxminus2),
                    "SIGRTMAXMINUS1" => Ok(Signal::Sigrtmaxminus1),
                    "SIGRTMAX" => Ok(Signal::Sigrtmax),
                    _ => Err(serde::de::Error::unknown_variant(value, FIELDS)),
                }
            }
        }
        deserializer.deserialize_any(GeneratedVisitor)
    }
}
impl serde::Serialize for StartContainerRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.StartContainerRequest", len)?;
        if true {
            struct_ser.serialize_field("containerId", &self.container_id)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for StartContainerRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "container_id",
            "containerId",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            ContainerId,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "containerId" | "container_id" => Ok(GeneratedField::ContainerId),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = StartContainerRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.StartContainerRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<StartContainerRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut container_id__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::ContainerId => {
                            if container_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containerId"));
                            }
                            container_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(StartContainerRequest {
                    container_id: container_id__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.StartContainerRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for StartContainerResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let len = 0;
        let struct_ser = serializer.serialize_struct("runtime.v1.StartContainerResponse", len)?;
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for StartContainerResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                            Ok(GeneratedField::__SkipField__)
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = StartContainerResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.StartContainerResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<StartContainerResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                while map_.next_key::<GeneratedField>()?.is_some() {
                    let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(StartContainerResponse {
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.StartContainerResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for StatusRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.StatusRequest", len)?;
        if true {
            struct_ser.serialize_field("verbose", &self.verbose)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for StatusRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "verbose",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Verbose,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "verbose" => Ok(GeneratedField::Verbose),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = StatusRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.StatusRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<StatusRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut verbose__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Verbose => {
                            if verbose__.is_some() {
                                return Err(serde::de::Error::duplicate_field("verbose"));
                            }
                            verbose__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(StatusRequest {
                    verbose: verbose__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.StatusRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for StatusResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.StatusResponse", len)?;
        if let Some(v) = self.status.as_ref() {
            struct_ser.serialize_field("status", v)?;
        }
        if true {
            struct_ser.serialize_field("info", &self.info)?;
        }
        if true {
            struct_ser.serialize_field("runtimeHandlers", &self.runtime_handlers)?;
        }
        if let Some(v) = self.features.as_ref() {
            struct_ser.serialize_field("features", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for StatusResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "status",
            "info",
            "runtime_handlers",
            "runtimeHandlers",
            "features",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Status,
            Info,
            RuntimeHandlers,
            Features,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "status" => Ok(GeneratedField::Status),
                            "info" => Ok(GeneratedField::Info),
                            "runtimeHandlers" | "runtime_handlers" => Ok(GeneratedField::RuntimeHandlers),
                            "features" => Ok(GeneratedField::Features),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = StatusResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.StatusResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<StatusResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut status__ = None;
                let mut info__ = None;
                let mut runtime_handlers__ = None;
                let mut features__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Status => {
                            if status__.is_some() {
                                return Err(serde::de::Error::duplicate_field("status"));
                            }
                            status__ = map_.next_value()?;
                        }
                        GeneratedField::Info => {
                            if info__.is_some() {
                                return Err(serde::de::Error::duplicate_field("info"));
                            }
                            info__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::RuntimeHandlers => {
                            if runtime_handlers__.is_some() {
                                return Err(serde::de::Error::duplicate_field("runtimeHandlers"));
                            }
                            runtime_handlers__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Features => {
                            if features__.is_some() {
                                return Err(serde::de::Error::duplicate_field("features"));
                            }
                            features__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(StatusResponse {
                    status: status__,
                    info: info__.unwrap_or_default(),
                    runtime_handlers: runtime_handlers__.unwrap_or_default(),
                    features: features__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.StatusResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for StopContainerRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.StopContainerRequest", len)?;
        if true {
            struct_ser.serialize_field("containerId", &self.container_id)?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("timeout", ToString::to_string(&self.timeout).as_str())?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for StopContainerRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "container_id",
            "containerId",
            "timeout",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            ContainerId,
            Timeout,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "containerId" | "container_id" => Ok(GeneratedField::ContainerId),
                            "timeout" => Ok(GeneratedField::Timeout),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = StopContainerRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.StopContainerRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<StopContainerRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut container_id__ = None;
                let mut timeout__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::ContainerId => {
                            if container_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containerId"));
                            }
                            container_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Timeout => {
                            if timeout__.is_some() {
                                return Err(serde::de::Error::duplicate_field("timeout"));
                            }
                            timeout__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(StopContainerRequest {
                    container_id: container_id__.unwrap_or_default(),
                    timeout: timeout__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.StopContainerRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for StopContainerResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let len = 0;
        let struct_ser = serializer.serialize_struct("runtime.v1.StopContainerResponse", len)?;
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for StopContainerResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                            Ok(GeneratedField::__SkipField__)
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = StopContainerResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.StopContainerResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<StopContainerResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                while map_.next_key::<GeneratedField>()?.is_some() {
                    let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(StopContainerResponse {
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.StopContainerResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for StopPodSandboxRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.StopPodSandboxRequest", len)?;
        if true {
            struct_ser.serialize_field("podSandboxId", &self.pod_sandbox_id)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for StopPodSandboxRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "pod_sandbox_id",
            "podSandboxId",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            PodSandboxId,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "podSandboxId" | "pod_sandbox_id" => Ok(GeneratedField::PodSandboxId),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = StopPodSandboxRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.StopPodSandboxRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<StopPodSandboxRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut pod_sandbox_id__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::PodSandboxId => {
                            if pod_sandbox_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("podSandboxId"));
                            }
                            pod_sandbox_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(StopPodSandboxRequest {
                    pod_sandbox_id: pod_sandbox_id__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.StopPodSandboxRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for StopPodSandboxResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let len = 0;
        let struct_ser = serializer.serialize_struct("runtime.v1.StopPodSandboxResponse", len)?;
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for StopPodSandboxResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                            Ok(GeneratedField::__SkipField__)
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = StopPodSandboxResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.StopPodSandboxResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<StopPodSandboxResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                while map_.next_key::<GeneratedField>()?.is_some() {
                    let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(StopPodSandboxResponse {
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.StopPodSandboxResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for StreamContainerStatsRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.StreamContainerStatsRequest", len)?;
        if let Some(v) = self.filter.as_ref() {
            struct_ser.serialize_field("filter", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for StreamContainerStatsRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "filter",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Filter,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "filter" => Ok(GeneratedField::Filter),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = StreamContainerStatsRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.StreamContainerStatsRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<StreamContainerStatsRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut filter__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Filter => {
                            if filter__.is_some() {
                                return Err(serde::de::Error::duplicate_field("filter"));
                            }
                            filter__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(StreamContainerStatsRequest {
                    filter: filter__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.StreamContainerStatsRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for StreamContainerStatsResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.StreamContainerStatsResponse", len)?;
        if true {
            struct_ser.serialize_field("containerStats", &self.container_stats)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for StreamContainerStatsResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "container_stats",
            "containerStats",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            ContainerStats,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "containerStats" | "container_stats" => Ok(GeneratedField::ContainerStats),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = StreamContainerStatsResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.StreamContainerStatsResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<StreamContainerStatsResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut container_stats__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::ContainerStats => {
                            if container_stats__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containerStats"));
                            }
                            container_stats__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(StreamContainerStatsResponse {
                    container_stats: container_stats__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.StreamContainerStatsResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for StreamContainersRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.StreamContainersRequest", len)?;
        if let Some(v) = self.filter.as_ref() {
            struct_ser.serialize_field("filter", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for StreamContainersRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "filter",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Filter,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "filter" => Ok(GeneratedField::Filter),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = StreamContainersRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.StreamContainersRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<StreamContainersRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut filter__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Filter => {
                            if filter__.is_some() {
                                return Err(serde::de::Error::duplicate_field("filter"));
                            }
                            filter__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(StreamContainersRequest {
                    filter: filter__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.StreamContainersRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for StreamContainersResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.StreamContainersResponse", len)?;
        if true {
            struct_ser.serialize_field("containers", &self.containers)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for StreamContainersResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "containers",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Containers,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "containers" => Ok(GeneratedField::Containers),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = StreamContainersResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.StreamContainersResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<StreamContainersResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut containers__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Containers => {
                            if containers__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containers"));
                            }
                            containers__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(StreamContainersResponse {
                    containers: containers__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.StreamContainersResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for StreamImagesRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.StreamImagesRequest", len)?;
        if let Some(v) = self.filter.as_ref() {
            struct_ser.serialize_field("filter", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for StreamImagesRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "filter",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Filter,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "filter" => Ok(GeneratedField::Filter),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = StreamImagesRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.StreamImagesRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<StreamImagesRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut filter__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Filter => {
                            if filter__.is_some() {
                                return Err(serde::de::Error::duplicate_field("filter"));
                            }
                            filter__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(StreamImagesRequest {
                    filter: filter__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.StreamImagesRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for StreamImagesResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.StreamImagesResponse", len)?;
        if true {
            struct_ser.serialize_field("images", &self.images)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for StreamImagesResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "images",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Images,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "images" => Ok(GeneratedField::Images),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = StreamImagesResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.StreamImagesResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<StreamImagesResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut images__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Images => {
                            if images__.is_some() {
                                return Err(serde::de::Error::duplicate_field("images"));
                            }
                            images__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(StreamImagesResponse {
                    images: images__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.StreamImagesResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for StreamPodSandboxMetricsRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let len = 0;
        let struct_ser = serializer.serialize_struct("runtime.v1.StreamPodSandboxMetricsRequest", len)?;
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for StreamPodSandboxMetricsRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                            Ok(GeneratedField::__SkipField__)
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = StreamPodSandboxMetricsRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.StreamPodSandboxMetricsRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<StreamPodSandboxMetricsRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                while map_.next_key::<GeneratedField>()?.is_some() {
                    let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(StreamPodSandboxMetricsRequest {
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.StreamPodSandboxMetricsRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for StreamPodSandboxMetricsResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.StreamPodSandboxMetricsResponse", len)?;
        if true {
            struct_ser.serialize_field("podSandboxMetrics", &self.pod_sandbox_metrics)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for StreamPodSandboxMetricsResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "pod_sandbox_metrics",
            "podSandboxMetrics",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            PodSandboxMetrics,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "podSandboxMetrics" | "pod_sandbox_metrics" => Ok(GeneratedField::PodSandboxMetrics),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = StreamPodSandboxMetricsResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.StreamPodSandboxMetricsResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<StreamPodSandboxMetricsResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut pod_sandbox_metrics__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::PodSandboxMetrics => {
                            if pod_sandbox_metrics__.is_some() {
                                return Err(serde::de::Error::duplicate_field("podSandboxMetrics"));
                            }
                            pod_sandbox_metrics__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(StreamPodSandboxMetricsResponse {
                    pod_sandbox_metrics: pod_sandbox_metrics__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.StreamPodSandboxMetricsResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for StreamPodSandboxStatsRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.StreamPodSandboxStatsRequest", len)?;
        if let Some(v) = self.filter.as_ref() {
            struct_ser.serialize_field("filter", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for StreamPodSandboxStatsRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "filter",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Filter,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "filter" => Ok(GeneratedField::Filter),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = StreamPodSandboxStatsRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.StreamPodSandboxStatsRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<StreamPodSandboxStatsRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut filter__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Filter => {
                            if filter__.is_some() {
                                return Err(serde::de::Error::duplicate_field("filter"));
                            }
                            filter__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(StreamPodSandboxStatsRequest {
                    filter: filter__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.StreamPodSandboxStatsRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for StreamPodSandboxStatsResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.StreamPodSandboxStatsResponse", len)?;
        if true {
            struct_ser.serialize_field("podSandboxStats", &self.pod_sandbox_stats)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for StreamPodSandboxStatsResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "pod_sandbox_stats",
            "podSandboxStats",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            PodSandboxStats,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "podSandboxStats" | "pod_sandbox_stats" => Ok(GeneratedField::PodSandboxStats),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = StreamPodSandboxStatsResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.StreamPodSandboxStatsResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<StreamPodSandboxStatsResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut pod_sandbox_stats__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::PodSandboxStats => {
                            if pod_sandbox_stats__.is_some() {
                                return Err(serde::de::Error::duplicate_field("podSandboxStats"));
                            }
                            pod_sandbox_stats__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(StreamPodSandboxStatsResponse {
                    pod_sandbox_stats: pod_sandbox_stats__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.StreamPodSandboxStatsResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for StreamPodSandboxesRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.StreamPodSandboxesRequest", len)?;
        if let Some(v) = self.filter.as_ref() {
            struct_ser.serialize_field("filter", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for StreamPodSandboxesRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "filter",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Filter,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "filter" => Ok(GeneratedField::Filter),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = StreamPodSandboxesRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.StreamPodSandboxesRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<StreamPodSandboxesRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut filter__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Filter => {
                            if filter__.is_some() {
                                return Err(serde::de::Error::duplicate_field("filter"));
                            }
                            filter__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(StreamPodSandboxesRequest {
                    filter: filter__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.StreamPodSandboxesRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for StreamPodSandboxesResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.StreamPodSandboxesResponse", len)?;
        if true {
            struct_ser.serialize_field("podSandboxes", &self.pod_sandboxes)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for StreamPodSandboxesResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "pod_sandboxes",
            "podSandboxes",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            PodSandboxes,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "podSandboxes" | "pod_sandboxes" => Ok(GeneratedField::PodSandboxes),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = StreamPodSandboxesResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.StreamPodSandboxesResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<StreamPodSandboxesResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut pod_sandboxes__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::PodSandboxes => {
                            if pod_sandboxes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("podSandboxes"));
                            }
                            pod_sandboxes__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(StreamPodSandboxesResponse {
                    pod_sandboxes: pod_sandboxes__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.StreamPodSandboxesResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for SupplementalGroupsPolicy {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        let variant = match self {
            Self::Merge => "Merge",
            Self::Strict => "Strict",
        };
        serializer.serialize_str(variant)
    }
}
impl<'de> serde::Deserialize<'de> for SupplementalGroupsPolicy {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "Merge",
            "Strict",
        ];

        struct GeneratedVisitor;

        impl serde::de::Visitor<'_> for GeneratedVisitor {
            type Value = SupplementalGroupsPolicy;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(formatter, "expected one of: {:?}", &FIELDS)
            }

            fn visit_i64<E>(self, v: i64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Signed(v), &self)
                    })
            }

            fn visit_u64<E>(self, v: u64) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                i32::try_from(v)
                    .ok()
                    .and_then(|x| x.try_into().ok())
                    .ok_or_else(|| {
                        serde::de::Error::invalid_value(serde::de::Unexpected::Unsigned(v), &self)
                    })
            }

            fn visit_str<E>(self, value: &str) -> std::result::Result<Self::Value, E>
            where
                E: serde::de::Error,
            {
                match value {
                    "Merge" => Ok(SupplementalGroupsPolicy::Merge),
                    "Strict" => Ok(SupplementalGroupsPolicy::Strict),
                    _ => Err(serde::de::Error::unknown_variant(value, FIELDS)),
                }
            }
        }
        deserializer.deserialize_any(GeneratedVisitor)
    }
}
impl serde::Serialize for SwapUsage {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.SwapUsage", len)?;
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("timestamp", ToString::to_string(&self.timestamp).as_str())?;
        }
        if let Some(v) = self.swap_available_bytes.as_ref() {
            struct_ser.serialize_field("swapAvailableBytes", v)?;
        }
        if let Some(v) = self.swap_usage_bytes.as_ref() {
            struct_ser.serialize_field("swapUsageBytes", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for SwapUsage {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "timestamp",
            "swap_available_bytes",
            "swapAvailableBytes",
            "swap_usage_bytes",
            "swapUsageBytes",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Timestamp,
            SwapAvailableBytes,
            SwapUsageBytes,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "timestamp" => Ok(GeneratedField::Timestamp),
                            "swapAvailableBytes" | "swap_available_bytes" => Ok(GeneratedField::SwapAvailableBytes),
                            "swapUsageBytes" | "swap_usage_bytes" => Ok(GeneratedField::SwapUsageBytes),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = SwapUsage;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.SwapUsage")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<SwapUsage, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut timestamp__ = None;
                let mut swap_available_bytes__ = None;
                let mut swap_usage_bytes__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Timestamp => {
                            if timestamp__.is_some() {
                                return Err(serde::de::Error::duplicate_field("timestamp"));
                            }
                            timestamp__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::SwapAvailableBytes => {
                            if swap_available_bytes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("swapAvailableBytes"));
                            }
                            swap_available_bytes__ = map_.next_value()?;
                        }
                        GeneratedField::SwapUsageBytes => {
                            if swap_usage_bytes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("swapUsageBytes"));
                            }
                            swap_usage_bytes__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(SwapUsage {
                    timestamp: timestamp__.unwrap_or_default(),
                    swap_available_bytes: swap_available_bytes__,
                    swap_usage_bytes: swap_usage_bytes__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.SwapUsage", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for UInt64Value {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.UInt64Value", len)?;
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("value", ToString::to_string(&self.value).as_str())?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for UInt64Value {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "value",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Value,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "value" => Ok(GeneratedField::Value),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = UInt64Value;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.UInt64Value")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<UInt64Value, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut value__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Value => {
                            if value__.is_some() {
                                return Err(serde::de::Error::duplicate_field("value"));
                            }
                            value__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(UInt64Value {
                    value: value__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.UInt64Value", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for UpdateContainerResourcesRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.UpdateContainerResourcesRequest", len)?;
        if true {
            struct_ser.serialize_field("containerId", &self.container_id)?;
        }
        if let Some(v) = self.linux.as_ref() {
            struct_ser.serialize_field("linux", v)?;
        }
        if let Some(v) = self.windows.as_ref() {
            struct_ser.serialize_field("windows", v)?;
        }
        if true {
            struct_ser.serialize_field("annotations", &self.annotations)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for UpdateContainerResourcesRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "container_id",
            "containerId",
            "linux",
            "windows",
            "annotations",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            ContainerId,
            Linux,
            Windows,
            Annotations,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "containerId" | "container_id" => Ok(GeneratedField::ContainerId),
                            "linux" => Ok(GeneratedField::Linux),
                            "windows" => Ok(GeneratedField::Windows),
                            "annotations" => Ok(GeneratedField::Annotations),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = UpdateContainerResourcesRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.UpdateContainerResourcesRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<UpdateContainerResourcesRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut container_id__ = None;
                let mut linux__ = None;
                let mut windows__ = None;
                let mut annotations__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::ContainerId => {
                            if container_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containerId"));
                            }
                            container_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Linux => {
                            if linux__.is_some() {
                                return Err(serde::de::Error::duplicate_field("linux"));
                            }
                            linux__ = map_.next_value()?;
                        }
                        GeneratedField::Windows => {
                            if windows__.is_some() {
                                return Err(serde::de::Error::duplicate_field("windows"));
                            }
                            windows__ = map_.next_value()?;
                        }
                        GeneratedField::Annotations => {
                            if annotations__.is_some() {
                                return Err(serde::de::Error::duplicate_field("annotations"));
                            }
                            annotations__ = Some(
                                map_.next_value::<std::collections::HashMap<_, _>>()?
                            );
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(UpdateContainerResourcesRequest {
                    container_id: container_id__.unwrap_or_default(),
                    linux: linux__,
                    windows: windows__,
                    annotations: annotations__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.UpdateContainerResourcesRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for UpdateContainerResourcesResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let len = 0;
        let struct_ser = serializer.serialize_struct("runtime.v1.UpdateContainerResourcesResponse", len)?;
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for UpdateContainerResourcesResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                            Ok(GeneratedField::__SkipField__)
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = UpdateContainerResourcesResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.UpdateContainerResourcesResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<UpdateContainerResourcesResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                while map_.next_key::<GeneratedField>()?.is_some() {
                    let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(UpdateContainerResourcesResponse {
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.UpdateContainerResourcesResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for UpdatePodSandboxResourcesRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.UpdatePodSandboxResourcesRequest", len)?;
        if true {
            struct_ser.serialize_field("podSandboxId", &self.pod_sandbox_id)?;
        }
        if let Some(v) = self.overhead.as_ref() {
            struct_ser.serialize_field("overhead", v)?;
        }
        if let Some(v) = self.resources.as_ref() {
            struct_ser.serialize_field("resources", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for UpdatePodSandboxResourcesRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "pod_sandbox_id",
            "podSandboxId",
            "overhead",
            "resources",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            PodSandboxId,
            Overhead,
            Resources,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "podSandboxId" | "pod_sandbox_id" => Ok(GeneratedField::PodSandboxId),
                            "overhead" => Ok(GeneratedField::Overhead),
                            "resources" => Ok(GeneratedField::Resources),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = UpdatePodSandboxResourcesRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.UpdatePodSandboxResourcesRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<UpdatePodSandboxResourcesRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut pod_sandbox_id__ = None;
                let mut overhead__ = None;
                let mut resources__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::PodSandboxId => {
                            if pod_sandbox_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("podSandboxId"));
                            }
                            pod_sandbox_id__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Overhead => {
                            if overhead__.is_some() {
                                return Err(serde::de::Error::duplicate_field("overhead"));
                            }
                            overhead__ = map_.next_value()?;
                        }
                        GeneratedField::Resources => {
                            if resources__.is_some() {
                                return Err(serde::de::Error::duplicate_field("resources"));
                            }
                            resources__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(UpdatePodSandboxResourcesRequest {
                    pod_sandbox_id: pod_sandbox_id__.unwrap_or_default(),
                    overhead: overhead__,
                    resources: resources__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.UpdatePodSandboxResourcesRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for UpdatePodSandboxResourcesResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let len = 0;
        let struct_ser = serializer.serialize_struct("runtime.v1.UpdatePodSandboxResourcesResponse", len)?;
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for UpdatePodSandboxResourcesResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                            Ok(GeneratedField::__SkipField__)
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = UpdatePodSandboxResourcesResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.UpdatePodSandboxResourcesResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<UpdatePodSandboxResourcesResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                while map_.next_key::<GeneratedField>()?.is_some() {
                    let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(UpdatePodSandboxResourcesResponse {
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.UpdatePodSandboxResourcesResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for UpdateRuntimeConfigRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.UpdateRuntimeConfigRequest", len)?;
        if let Some(v) = self.runtime_config.as_ref() {
            struct_ser.serialize_field("runtimeConfig", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for UpdateRuntimeConfigRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "runtime_config",
            "runtimeConfig",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            RuntimeConfig,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "runtimeConfig" | "runtime_config" => Ok(GeneratedField::RuntimeConfig),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = UpdateRuntimeConfigRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.UpdateRuntimeConfigRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<UpdateRuntimeConfigRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut runtime_config__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::RuntimeConfig => {
                            if runtime_config__.is_some() {
                                return Err(serde::de::Error::duplicate_field("runtimeConfig"));
                            }
                            runtime_config__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(UpdateRuntimeConfigRequest {
                    runtime_config: runtime_config__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.UpdateRuntimeConfigRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for UpdateRuntimeConfigResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let len = 0;
        let struct_ser = serializer.serialize_struct("runtime.v1.UpdateRuntimeConfigResponse", len)?;
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for UpdateRuntimeConfigResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                            Ok(GeneratedField::__SkipField__)
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = UpdateRuntimeConfigResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.UpdateRuntimeConfigResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<UpdateRuntimeConfigResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                while map_.next_key::<GeneratedField>()?.is_some() {
                    let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                }
                Ok(UpdateRuntimeConfigResponse {
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.UpdateRuntimeConfigResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for UserNamespace {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.UserNamespace", len)?;
        if true {
            let v = NamespaceMode::try_from(self.mode)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.mode)))?;
            struct_ser.serialize_field("mode", &v)?;
        }
        if true {
            struct_ser.serialize_field("uids", &self.uids)?;
        }
        if true {
            struct_ser.serialize_field("gids", &self.gids)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for UserNamespace {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "mode",
            "uids",
            "gids",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Mode,
            Uids,
            Gids,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "mode" => Ok(GeneratedField::Mode),
                            "uids" => Ok(GeneratedField::Uids),
                            "gids" => Ok(GeneratedField::Gids),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = UserNamespace;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.UserNamespace")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<UserNamespace, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut mode__ = None;
                let mut uids__ = None;
                let mut gids__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Mode => {
                            if mode__.is_some() {
                                return Err(serde::de::Error::duplicate_field("mode"));
                            }
                            mode__ = Some(map_.next_value::<NamespaceMode>()? as i32);
                        }
                        GeneratedField::Uids => {
                            if uids__.is_some() {
                                return Err(serde::de::Error::duplicate_field("uids"));
                            }
                            uids__ = Some(map_.next_value()?);
                        }
                        GeneratedField::Gids => {
                            if gids__.is_some() {
                                return Err(serde::de::Error::duplicate_field("gids"));
                            }
                            gids__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(UserNamespace {
                    mode: mode__.unwrap_or_default(),
                    uids: uids__.unwrap_or_default(),
                    gids: gids__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.UserNamespace", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for VersionRequest {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.VersionRequest", len)?;
        if true {
            struct_ser.serialize_field("version", &self.version)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for VersionRequest {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "version",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Version,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "version" => Ok(GeneratedField::Version),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = VersionRequest;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.VersionRequest")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<VersionRequest, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut version__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Version => {
                            if version__.is_some() {
                                return Err(serde::de::Error::duplicate_field("version"));
                            }
                            version__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(VersionRequest {
                    version: version__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.VersionRequest", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for VersionResponse {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.VersionResponse", len)?;
        if true {
            struct_ser.serialize_field("version", &self.version)?;
        }
        if true {
            struct_ser.serialize_field("runtimeName", &self.runtime_name)?;
        }
        if true {
            struct_ser.serialize_field("runtimeVersion", &self.runtime_version)?;
        }
        if true {
            struct_ser.serialize_field("runtimeApiVersion", &self.runtime_api_version)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for VersionResponse {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "version",
            "runtime_name",
            "runtimeName",
            "runtime_version",
            "runtimeVersion",
            "runtime_api_version",
            "runtimeApiVersion",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Version,
            RuntimeName,
            RuntimeVersion,
            RuntimeApiVersion,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "version" => Ok(GeneratedField::Version),
                            "runtimeName" | "runtime_name" => Ok(GeneratedField::RuntimeName),
                            "runtimeVersion" | "runtime_version" => Ok(GeneratedField::RuntimeVersion),
                            "runtimeApiVersion" | "runtime_api_version" => Ok(GeneratedField::RuntimeApiVersion),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = VersionResponse;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.VersionResponse")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<VersionResponse, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut version__ = None;
                let mut runtime_name__ = None;
                let mut runtime_version__ = None;
                let mut runtime_api_version__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Version => {
                            if version__.is_some() {
                                return Err(serde::de::Error::duplicate_field("version"));
                            }
                            version__ = Some(map_.next_value()?);
                        }
                        GeneratedField::RuntimeName => {
                            if runtime_name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("runtimeName"));
                            }
                            runtime_name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::RuntimeVersion => {
                            if runtime_version__.is_some() {
                                return Err(serde::de::Error::duplicate_field("runtimeVersion"));
                            }
                            runtime_version__ = Some(map_.next_value()?);
                        }
                        GeneratedField::RuntimeApiVersion => {
                            if runtime_api_version__.is_some() {
                                return Err(serde::de::Error::duplicate_field("runtimeApiVersion"));
                            }
                            runtime_api_version__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(VersionResponse {
                    version: version__.unwrap_or_default(),
                    runtime_name: runtime_name__.unwrap_or_default(),
                    runtime_version: runtime_version__.unwrap_or_default(),
                    runtime_api_version: runtime_api_version__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.VersionResponse", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for WindowsContainerConfig {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.WindowsContainerConfig", len)?;
        if let Some(v) = self.resources.as_ref() {
            struct_ser.serialize_field("resources", v)?;
        }
        if let Some(v) = self.security_context.as_ref() {
            struct_ser.serialize_field("securityContext", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for WindowsContainerConfig {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "resources",
            "security_context",
            "securityContext",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Resources,
            SecurityContext,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "resources" => Ok(GeneratedField::Resources),
                            "securityContext" | "security_context" => Ok(GeneratedField::SecurityContext),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = WindowsContainerConfig;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.WindowsContainerConfig")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<WindowsContainerConfig, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut resources__ = None;
                let mut security_context__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Resources => {
                            if resources__.is_some() {
                                return Err(serde::de::Error::duplicate_field("resources"));
                            }
                            resources__ = map_.next_value()?;
                        }
                        GeneratedField::SecurityContext => {
                            if security_context__.is_some() {
                                return Err(serde::de::Error::duplicate_field("securityContext"));
                            }
                            security_context__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(WindowsContainerConfig {
                    resources: resources__,
                    security_context: security_context__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.WindowsContainerConfig", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for WindowsContainerResources {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.WindowsContainerResources", len)?;
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("cpuShares", ToString::to_string(&self.cpu_shares).as_str())?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("cpuCount", ToString::to_string(&self.cpu_count).as_str())?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("cpuMaximum", ToString::to_string(&self.cpu_maximum).as_str())?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("memoryLimitInBytes", ToString::to_string(&self.memory_limit_in_bytes).as_str())?;
        }
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("rootfsSizeInBytes", ToString::to_string(&self.rootfs_size_in_bytes).as_str())?;
        }
        if true {
            struct_ser.serialize_field("affinityCpus", &self.affinity_cpus)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for WindowsContainerResources {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "cpu_shares",
            "cpuShares",
            "cpu_count",
            "cpuCount",
            "cpu_maximum",
            "cpuMaximum",
            "memory_limit_in_bytes",
            "memoryLimitInBytes",
            "rootfs_size_in_bytes",
            "rootfsSizeInBytes",
            "affinity_cpus",
            "affinityCpus",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            CpuShares,
            CpuCount,
            CpuMaximum,
            MemoryLimitInBytes,
            RootfsSizeInBytes,
            AffinityCpus,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "cpuShares" | "cpu_shares" => Ok(GeneratedField::CpuShares),
                            "cpuCount" | "cpu_count" => Ok(GeneratedField::CpuCount),
                            "cpuMaximum" | "cpu_maximum" => Ok(GeneratedField::CpuMaximum),
                            "memoryLimitInBytes" | "memory_limit_in_bytes" => Ok(GeneratedField::MemoryLimitInBytes),
                            "rootfsSizeInBytes" | "rootfs_size_in_bytes" => Ok(GeneratedField::RootfsSizeInBytes),
                            "affinityCpus" | "affinity_cpus" => Ok(GeneratedField::AffinityCpus),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = WindowsContainerResources;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.WindowsContainerResources")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<WindowsContainerResources, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut cpu_shares__ = None;
                let mut cpu_count__ = None;
                let mut cpu_maximum__ = None;
                let mut memory_limit_in_bytes__ = None;
                let mut rootfs_size_in_bytes__ = None;
                let mut affinity_cpus__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::CpuShares => {
                            if cpu_shares__.is_some() {
                                return Err(serde::de::Error::duplicate_field("cpuShares"));
                            }
                            cpu_shares__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::CpuCount => {
                            if cpu_count__.is_some() {
                                return Err(serde::de::Error::duplicate_field("cpuCount"));
                            }
                            cpu_count__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::CpuMaximum => {
                            if cpu_maximum__.is_some() {
                                return Err(serde::de::Error::duplicate_field("cpuMaximum"));
                            }
                            cpu_maximum__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::MemoryLimitInBytes => {
                            if memory_limit_in_bytes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("memoryLimitInBytes"));
                            }
                            memory_limit_in_bytes__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::RootfsSizeInBytes => {
                            if rootfs_size_in_bytes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("rootfsSizeInBytes"));
                            }
                            rootfs_size_in_bytes__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::AffinityCpus => {
                            if affinity_cpus__.is_some() {
                                return Err(serde::de::Error::duplicate_field("affinityCpus"));
                            }
                            affinity_cpus__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(WindowsContainerResources {
                    cpu_shares: cpu_shares__.unwrap_or_default(),
                    cpu_count: cpu_count__.unwrap_or_default(),
                    cpu_maximum: cpu_maximum__.unwrap_or_default(),
                    memory_limit_in_bytes: memory_limit_in_bytes__.unwrap_or_default(),
                    rootfs_size_in_bytes: rootfs_size_in_bytes__.unwrap_or_default(),
                    affinity_cpus: affinity_cpus__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.WindowsContainerResources", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for WindowsContainerSecurityContext {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.WindowsContainerSecurityContext", len)?;
        if true {
            struct_ser.serialize_field("runAsUsername", &self.run_as_username)?;
        }
        if true {
            struct_ser.serialize_field("credentialSpec", &self.credential_spec)?;
        }
        if true {
            struct_ser.serialize_field("hostProcess", &self.host_process)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for WindowsContainerSecurityContext {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "run_as_username",
            "runAsUsername",
            "credential_spec",
            "credentialSpec",
            "host_process",
            "hostProcess",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            RunAsUsername,
            CredentialSpec,
            HostProcess,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "runAsUsername" | "run_as_username" => Ok(GeneratedField::RunAsUsername),
                            "credentialSpec" | "credential_spec" => Ok(GeneratedField::CredentialSpec),
                            "hostProcess" | "host_process" => Ok(GeneratedField::HostProcess),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = WindowsContainerSecurityContext;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.WindowsContainerSecurityContext")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<WindowsContainerSecurityContext, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut run_as_username__ = None;
                let mut credential_spec__ = None;
                let mut host_process__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::RunAsUsername => {
                            if run_as_username__.is_some() {
                                return Err(serde::de::Error::duplicate_field("runAsUsername"));
                            }
                            run_as_username__ = Some(map_.next_value()?);
                        }
                        GeneratedField::CredentialSpec => {
                            if credential_spec__.is_some() {
                                return Err(serde::de::Error::duplicate_field("credentialSpec"));
                            }
                            credential_spec__ = Some(map_.next_value()?);
                        }
                        GeneratedField::HostProcess => {
                            if host_process__.is_some() {
                                return Err(serde::de::Error::duplicate_field("hostProcess"));
                            }
                            host_process__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(WindowsContainerSecurityContext {
                    run_as_username: run_as_username__.unwrap_or_default(),
                    credential_spec: credential_spec__.unwrap_or_default(),
                    host_process: host_process__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.WindowsContainerSecurityContext", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for WindowsContainerStats {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.WindowsContainerStats", len)?;
        if let Some(v) = self.attributes.as_ref() {
            struct_ser.serialize_field("attributes", v)?;
        }
        if let Some(v) = self.cpu.as_ref() {
            struct_ser.serialize_field("cpu", v)?;
        }
        if let Some(v) = self.memory.as_ref() {
            struct_ser.serialize_field("memory", v)?;
        }
        if let Some(v) = self.writable_layer.as_ref() {
            struct_ser.serialize_field("writableLayer", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for WindowsContainerStats {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "attributes",
            "cpu",
            "memory",
            "writable_layer",
            "writableLayer",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Attributes,
            Cpu,
            Memory,
            WritableLayer,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "attributes" => Ok(GeneratedField::Attributes),
                            "cpu" => Ok(GeneratedField::Cpu),
                            "memory" => Ok(GeneratedField::Memory),
                            "writableLayer" | "writable_layer" => Ok(GeneratedField::WritableLayer),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = WindowsContainerStats;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.WindowsContainerStats")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<WindowsContainerStats, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut attributes__ = None;
                let mut cpu__ = None;
                let mut memory__ = None;
                let mut writable_layer__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Attributes => {
                            if attributes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("attributes"));
                            }
                            attributes__ = map_.next_value()?;
                        }
                        GeneratedField::Cpu => {
                            if cpu__.is_some() {
                                return Err(serde::de::Error::duplicate_field("cpu"));
                            }
                            cpu__ = map_.next_value()?;
                        }
                        GeneratedField::Memory => {
                            if memory__.is_some() {
                                return Err(serde::de::Error::duplicate_field("memory"));
                            }
                            memory__ = map_.next_value()?;
                        }
                        GeneratedField::WritableLayer => {
                            if writable_layer__.is_some() {
                                return Err(serde::de::Error::duplicate_field("writableLayer"));
                            }
                            writable_layer__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(WindowsContainerStats {
                    attributes: attributes__,
                    cpu: cpu__,
                    memory: memory__,
                    writable_layer: writable_layer__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.WindowsContainerStats", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for WindowsCpuGroupAffinity {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.WindowsCpuGroupAffinity", len)?;
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("cpuMask", ToString::to_string(&self.cpu_mask).as_str())?;
        }
        if true {
            struct_ser.serialize_field("cpuGroup", &self.cpu_group)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for WindowsCpuGroupAffinity {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "cpu_mask",
            "cpuMask",
            "cpu_group",
            "cpuGroup",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            CpuMask,
            CpuGroup,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "cpuMask" | "cpu_mask" => Ok(GeneratedField::CpuMask),
                            "cpuGroup" | "cpu_group" => Ok(GeneratedField::CpuGroup),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = WindowsCpuGroupAffinity;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.WindowsCpuGroupAffinity")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<WindowsCpuGroupAffinity, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut cpu_mask__ = None;
                let mut cpu_group__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::CpuMask => {
                            if cpu_mask__.is_some() {
                                return Err(serde::de::Error::duplicate_field("cpuMask"));
                            }
                            cpu_mask__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::CpuGroup => {
                            if cpu_group__.is_some() {
                                return Err(serde::de::Error::duplicate_field("cpuGroup"));
                            }
                            cpu_group__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(WindowsCpuGroupAffinity {
                    cpu_mask: cpu_mask__.unwrap_or_default(),
                    cpu_group: cpu_group__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.WindowsCpuGroupAffinity", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for WindowsCpuUsage {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.WindowsCpuUsage", len)?;
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("timestamp", ToString::to_string(&self.timestamp).as_str())?;
        }
        if let Some(v) = self.usage_core_nano_seconds.as_ref() {
            struct_ser.serialize_field("usageCoreNanoSeconds", v)?;
        }
        if let Some(v) = self.usage_nano_cores.as_ref() {
            struct_ser.serialize_field("usageNanoCores", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for WindowsCpuUsage {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "timestamp",
            "usage_core_nano_seconds",
            "usageCoreNanoSeconds",
            "usage_nano_cores",
            "usageNanoCores",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Timestamp,
            UsageCoreNanoSeconds,
            UsageNanoCores,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "timestamp" => Ok(GeneratedField::Timestamp),
                            "usageCoreNanoSeconds" | "usage_core_nano_seconds" => Ok(GeneratedField::UsageCoreNanoSeconds),
                            "usageNanoCores" | "usage_nano_cores" => Ok(GeneratedField::UsageNanoCores),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = WindowsCpuUsage;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.WindowsCpuUsage")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<WindowsCpuUsage, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut timestamp__ = None;
                let mut usage_core_nano_seconds__ = None;
                let mut usage_nano_cores__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Timestamp => {
                            if timestamp__.is_some() {
                                return Err(serde::de::Error::duplicate_field("timestamp"));
                            }
                            timestamp__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::UsageCoreNanoSeconds => {
                            if usage_core_nano_seconds__.is_some() {
                                return Err(serde::de::Error::duplicate_field("usageCoreNanoSeconds"));
                            }
                            usage_core_nano_seconds__ = map_.next_value()?;
                        }
                        GeneratedField::UsageNanoCores => {
                            if usage_nano_cores__.is_some() {
                                return Err(serde::de::Error::duplicate_field("usageNanoCores"));
                            }
                            usage_nano_cores__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(WindowsCpuUsage {
                    timestamp: timestamp__.unwrap_or_default(),
                    usage_core_nano_seconds: usage_core_nano_seconds__,
                    usage_nano_cores: usage_nano_cores__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.WindowsCpuUsage", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for WindowsFilesystemUsage {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.WindowsFilesystemUsage", len)?;
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("timestamp", ToString::to_string(&self.timestamp).as_str())?;
        }
        if let Some(v) = self.fs_id.as_ref() {
            struct_ser.serialize_field("fsId", v)?;
        }
        if let Some(v) = self.used_bytes.as_ref() {
            struct_ser.serialize_field("usedBytes", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for WindowsFilesystemUsage {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "timestamp",
            "fs_id",
            "fsId",
            "used_bytes",
            "usedBytes",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Timestamp,
            FsId,
            UsedBytes,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "timestamp" => Ok(GeneratedField::Timestamp),
                            "fsId" | "fs_id" => Ok(GeneratedField::FsId),
                            "usedBytes" | "used_bytes" => Ok(GeneratedField::UsedBytes),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = WindowsFilesystemUsage;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.WindowsFilesystemUsage")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<WindowsFilesystemUsage, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut timestamp__ = None;
                let mut fs_id__ = None;
                let mut used_bytes__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Timestamp => {
                            if timestamp__.is_some() {
                                return Err(serde::de::Error::duplicate_field("timestamp"));
                            }
                            timestamp__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::FsId => {
                            if fs_id__.is_some() {
                                return Err(serde::de::Error::duplicate_field("fsId"));
                            }
                            fs_id__ = map_.next_value()?;
                        }
                        GeneratedField::UsedBytes => {
                            if used_bytes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("usedBytes"));
                            }
                            used_bytes__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(WindowsFilesystemUsage {
                    timestamp: timestamp__.unwrap_or_default(),
                    fs_id: fs_id__,
                    used_bytes: used_bytes__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.WindowsFilesystemUsage", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for WindowsMemoryUsage {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.WindowsMemoryUsage", len)?;
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("timestamp", ToString::to_string(&self.timestamp).as_str())?;
        }
        if let Some(v) = self.working_set_bytes.as_ref() {
            struct_ser.serialize_field("workingSetBytes", v)?;
        }
        if let Some(v) = self.available_bytes.as_ref() {
            struct_ser.serialize_field("availableBytes", v)?;
        }
        if let Some(v) = self.page_faults.as_ref() {
            struct_ser.serialize_field("pageFaults", v)?;
        }
        if let Some(v) = self.commit_memory_bytes.as_ref() {
            struct_ser.serialize_field("commitMemoryBytes", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for WindowsMemoryUsage {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "timestamp",
            "working_set_bytes",
            "workingSetBytes",
            "available_bytes",
            "availableBytes",
            "page_faults",
            "pageFaults",
            "commit_memory_bytes",
            "commitMemoryBytes",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Timestamp,
            WorkingSetBytes,
            AvailableBytes,
            PageFaults,
            CommitMemoryBytes,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "timestamp" => Ok(GeneratedField::Timestamp),
                            "workingSetBytes" | "working_set_bytes" => Ok(GeneratedField::WorkingSetBytes),
                            "availableBytes" | "available_bytes" => Ok(GeneratedField::AvailableBytes),
                            "pageFaults" | "page_faults" => Ok(GeneratedField::PageFaults),
                            "commitMemoryBytes" | "commit_memory_bytes" => Ok(GeneratedField::CommitMemoryBytes),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = WindowsMemoryUsage;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.WindowsMemoryUsage")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<WindowsMemoryUsage, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut timestamp__ = None;
                let mut working_set_bytes__ = None;
                let mut available_bytes__ = None;
                let mut page_faults__ = None;
                let mut commit_memory_bytes__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Timestamp => {
                            if timestamp__.is_some() {
                                return Err(serde::de::Error::duplicate_field("timestamp"));
                            }
                            timestamp__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::WorkingSetBytes => {
                            if working_set_bytes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("workingSetBytes"));
                            }
                            working_set_bytes__ = map_.next_value()?;
                        }
                        GeneratedField::AvailableBytes => {
                            if available_bytes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("availableBytes"));
                            }
                            available_bytes__ = map_.next_value()?;
                        }
                        GeneratedField::PageFaults => {
                            if page_faults__.is_some() {
                                return Err(serde::de::Error::duplicate_field("pageFaults"));
                            }
                            page_faults__ = map_.next_value()?;
                        }
                        GeneratedField::CommitMemoryBytes => {
                            if commit_memory_bytes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("commitMemoryBytes"));
                            }
                            commit_memory_bytes__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(WindowsMemoryUsage {
                    timestamp: timestamp__.unwrap_or_default(),
                    working_set_bytes: working_set_bytes__,
                    available_bytes: available_bytes__,
                    page_faults: page_faults__,
                    commit_memory_bytes: commit_memory_bytes__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.WindowsMemoryUsage", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for WindowsNamespaceOption {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.WindowsNamespaceOption", len)?;
        if true {
            let v = NamespaceMode::try_from(self.network)
                .map_err(|_| serde::ser::Error::custom(format!("Invalid variant {}", self.network)))?;
            struct_ser.serialize_field("network", &v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for WindowsNamespaceOption {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "network",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Network,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "network" => Ok(GeneratedField::Network),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = WindowsNamespaceOption;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.WindowsNamespaceOption")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<WindowsNamespaceOption, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut network__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Network => {
                            if network__.is_some() {
                                return Err(serde::de::Error::duplicate_field("network"));
                            }
                            network__ = Some(map_.next_value::<NamespaceMode>()? as i32);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(WindowsNamespaceOption {
                    network: network__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.WindowsNamespaceOption", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for WindowsNetworkInterfaceUsage {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.WindowsNetworkInterfaceUsage", len)?;
        if true {
            struct_ser.serialize_field("name", &self.name)?;
        }
        if let Some(v) = self.rx_bytes.as_ref() {
            struct_ser.serialize_field("rxBytes", v)?;
        }
        if let Some(v) = self.rx_packets_dropped.as_ref() {
            struct_ser.serialize_field("rxPacketsDropped", v)?;
        }
        if let Some(v) = self.tx_bytes.as_ref() {
            struct_ser.serialize_field("txBytes", v)?;
        }
        if let Some(v) = self.tx_packets_dropped.as_ref() {
            struct_ser.serialize_field("txPacketsDropped", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for WindowsNetworkInterfaceUsage {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "name",
            "rx_bytes",
            "rxBytes",
            "rx_packets_dropped",
            "rxPacketsDropped",
            "tx_bytes",
            "txBytes",
            "tx_packets_dropped",
            "txPacketsDropped",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Name,
            RxBytes,
            RxPacketsDropped,
            TxBytes,
            TxPacketsDropped,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "name" => Ok(GeneratedField::Name),
                            "rxBytes" | "rx_bytes" => Ok(GeneratedField::RxBytes),
                            "rxPacketsDropped" | "rx_packets_dropped" => Ok(GeneratedField::RxPacketsDropped),
                            "txBytes" | "tx_bytes" => Ok(GeneratedField::TxBytes),
                            "txPacketsDropped" | "tx_packets_dropped" => Ok(GeneratedField::TxPacketsDropped),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = WindowsNetworkInterfaceUsage;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.WindowsNetworkInterfaceUsage")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<WindowsNetworkInterfaceUsage, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut name__ = None;
                let mut rx_bytes__ = None;
                let mut rx_packets_dropped__ = None;
                let mut tx_bytes__ = None;
                let mut tx_packets_dropped__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Name => {
                            if name__.is_some() {
                                return Err(serde::de::Error::duplicate_field("name"));
                            }
                            name__ = Some(map_.next_value()?);
                        }
                        GeneratedField::RxBytes => {
                            if rx_bytes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("rxBytes"));
                            }
                            rx_bytes__ = map_.next_value()?;
                        }
                        GeneratedField::RxPacketsDropped => {
                            if rx_packets_dropped__.is_some() {
                                return Err(serde::de::Error::duplicate_field("rxPacketsDropped"));
                            }
                            rx_packets_dropped__ = map_.next_value()?;
                        }
                        GeneratedField::TxBytes => {
                            if tx_bytes__.is_some() {
                                return Err(serde::de::Error::duplicate_field("txBytes"));
                            }
                            tx_bytes__ = map_.next_value()?;
                        }
                        GeneratedField::TxPacketsDropped => {
                            if tx_packets_dropped__.is_some() {
                                return Err(serde::de::Error::duplicate_field("txPacketsDropped"));
                            }
                            tx_packets_dropped__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(WindowsNetworkInterfaceUsage {
                    name: name__.unwrap_or_default(),
                    rx_bytes: rx_bytes__,
                    rx_packets_dropped: rx_packets_dropped__,
                    tx_bytes: tx_bytes__,
                    tx_packets_dropped: tx_packets_dropped__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.WindowsNetworkInterfaceUsage", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for WindowsNetworkUsage {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.WindowsNetworkUsage", len)?;
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("timestamp", ToString::to_string(&self.timestamp).as_str())?;
        }
        if let Some(v) = self.default_interface.as_ref() {
            struct_ser.serialize_field("defaultInterface", v)?;
        }
        if true {
            struct_ser.serialize_field("interfaces", &self.interfaces)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for WindowsNetworkUsage {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "timestamp",
            "default_interface",
            "defaultInterface",
            "interfaces",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Timestamp,
            DefaultInterface,
            Interfaces,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "timestamp" => Ok(GeneratedField::Timestamp),
                            "defaultInterface" | "default_interface" => Ok(GeneratedField::DefaultInterface),
                            "interfaces" => Ok(GeneratedField::Interfaces),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = WindowsNetworkUsage;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.WindowsNetworkUsage")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<WindowsNetworkUsage, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut timestamp__ = None;
                let mut default_interface__ = None;
                let mut interfaces__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Timestamp => {
                            if timestamp__.is_some() {
                                return Err(serde::de::Error::duplicate_field("timestamp"));
                            }
                            timestamp__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::DefaultInterface => {
                            if default_interface__.is_some() {
                                return Err(serde::de::Error::duplicate_field("defaultInterface"));
                            }
                            default_interface__ = map_.next_value()?;
                        }
                        GeneratedField::Interfaces => {
                            if interfaces__.is_some() {
                                return Err(serde::de::Error::duplicate_field("interfaces"));
                            }
                            interfaces__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(WindowsNetworkUsage {
                    timestamp: timestamp__.unwrap_or_default(),
                    default_interface: default_interface__,
                    interfaces: interfaces__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.WindowsNetworkUsage", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for WindowsPodSandboxConfig {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.WindowsPodSandboxConfig", len)?;
        if let Some(v) = self.security_context.as_ref() {
            struct_ser.serialize_field("securityContext", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for WindowsPodSandboxConfig {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "security_context",
            "securityContext",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            SecurityContext,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "securityContext" | "security_context" => Ok(GeneratedField::SecurityContext),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = WindowsPodSandboxConfig;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.WindowsPodSandboxConfig")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<WindowsPodSandboxConfig, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut security_context__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::SecurityContext => {
                            if security_context__.is_some() {
                                return Err(serde::de::Error::duplicate_field("securityContext"));
                            }
                            security_context__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(WindowsPodSandboxConfig {
                    security_context: security_context__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.WindowsPodSandboxConfig", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for WindowsPodSandboxStats {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.WindowsPodSandboxStats", len)?;
        if let Some(v) = self.cpu.as_ref() {
            struct_ser.serialize_field("cpu", v)?;
        }
        if let Some(v) = self.memory.as_ref() {
            struct_ser.serialize_field("memory", v)?;
        }
        if let Some(v) = self.network.as_ref() {
            struct_ser.serialize_field("network", v)?;
        }
        if let Some(v) = self.process.as_ref() {
            struct_ser.serialize_field("process", v)?;
        }
        if true {
            struct_ser.serialize_field("containers", &self.containers)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for WindowsPodSandboxStats {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "cpu",
            "memory",
            "network",
            "process",
            "containers",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Cpu,
            Memory,
            Network,
            Process,
            Containers,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "cpu" => Ok(GeneratedField::Cpu),
                            "memory" => Ok(GeneratedField::Memory),
                            "network" => Ok(GeneratedField::Network),
                            "process" => Ok(GeneratedField::Process),
                            "containers" => Ok(GeneratedField::Containers),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = WindowsPodSandboxStats;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.WindowsPodSandboxStats")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<WindowsPodSandboxStats, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut cpu__ = None;
                let mut memory__ = None;
                let mut network__ = None;
                let mut process__ = None;
                let mut containers__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Cpu => {
                            if cpu__.is_some() {
                                return Err(serde::de::Error::duplicate_field("cpu"));
                            }
                            cpu__ = map_.next_value()?;
                        }
                        GeneratedField::Memory => {
                            if memory__.is_some() {
                                return Err(serde::de::Error::duplicate_field("memory"));
                            }
                            memory__ = map_.next_value()?;
                        }
                        GeneratedField::Network => {
                            if network__.is_some() {
                                return Err(serde::de::Error::duplicate_field("network"));
                            }
                            network__ = map_.next_value()?;
                        }
                        GeneratedField::Process => {
                            if process__.is_some() {
                                return Err(serde::de::Error::duplicate_field("process"));
                            }
                            process__ = map_.next_value()?;
                        }
                        GeneratedField::Containers => {
                            if containers__.is_some() {
                                return Err(serde::de::Error::duplicate_field("containers"));
                            }
                            containers__ = Some(map_.next_value()?);
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(WindowsPodSandboxStats {
                    cpu: cpu__,
                    memory: memory__,
                    network: network__,
                    process: process__,
                    containers: containers__.unwrap_or_default(),
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.WindowsPodSandboxStats", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for WindowsProcessUsage {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.WindowsProcessUsage", len)?;
        if true {
            #[allow(clippy::needless_borrow)]
            #[allow(clippy::needless_borrows_for_generic_args)]
            struct_ser.serialize_field("timestamp", ToString::to_string(&self.timestamp).as_str())?;
        }
        if let Some(v) = self.process_count.as_ref() {
            struct_ser.serialize_field("processCount", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for WindowsProcessUsage {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "timestamp",
            "process_count",
            "processCount",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            Timestamp,
            ProcessCount,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "timestamp" => Ok(GeneratedField::Timestamp),
                            "processCount" | "process_count" => Ok(GeneratedField::ProcessCount),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = WindowsProcessUsage;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.WindowsProcessUsage")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<WindowsProcessUsage, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut timestamp__ = None;
                let mut process_count__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::Timestamp => {
                            if timestamp__.is_some() {
                                return Err(serde::de::Error::duplicate_field("timestamp"));
                            }
                            timestamp__ = 
                                Some(map_.next_value::<::pbjson::private::NumberDeserialize<_>>()?.0)
                            ;
                        }
                        GeneratedField::ProcessCount => {
                            if process_count__.is_some() {
                                return Err(serde::de::Error::duplicate_field("processCount"));
                            }
                            process_count__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(WindowsProcessUsage {
                    timestamp: timestamp__.unwrap_or_default(),
                    process_count: process_count__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.WindowsProcessUsage", FIELDS, GeneratedVisitor)
    }
}
impl serde::Serialize for WindowsSandboxSecurityContext {
    #[allow(deprecated)]
    fn serialize<S>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error>
    where
        S: serde::Serializer,
    {
        use serde::ser::SerializeStruct;
        let mut len = 0;
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        if true {
            len += 1;
        }
        let mut struct_ser = serializer.serialize_struct("runtime.v1.WindowsSandboxSecurityContext", len)?;
        if true {
            struct_ser.serialize_field("runAsUsername", &self.run_as_username)?;
        }
        if true {
            struct_ser.serialize_field("credentialSpec", &self.credential_spec)?;
        }
        if true {
            struct_ser.serialize_field("hostProcess", &self.host_process)?;
        }
        if let Some(v) = self.namespace_options.as_ref() {
            struct_ser.serialize_field("namespaceOptions", v)?;
        }
        struct_ser.end()
    }
}
impl<'de> serde::Deserialize<'de> for WindowsSandboxSecurityContext {
    #[allow(deprecated)]
    fn deserialize<D>(deserializer: D) -> std::result::Result<Self, D::Error>
    where
        D: serde::Deserializer<'de>,
    {
        const FIELDS: &[&str] = &[
            "run_as_username",
            "runAsUsername",
            "credential_spec",
            "credentialSpec",
            "host_process",
            "hostProcess",
            "namespace_options",
            "namespaceOptions",
        ];

        #[allow(clippy::enum_variant_names)]
        enum GeneratedField {
            RunAsUsername,
            CredentialSpec,
            HostProcess,
            NamespaceOptions,
            __SkipField__,
        }
        impl<'de> serde::Deserialize<'de> for GeneratedField {
            fn deserialize<D>(deserializer: D) -> std::result::Result<GeneratedField, D::Error>
            where
                D: serde::Deserializer<'de>,
            {
                struct GeneratedVisitor;

                impl serde::de::Visitor<'_> for GeneratedVisitor {
                    type Value = GeneratedField;

                    fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        write!(formatter, "expected one of: {:?}", &FIELDS)
                    }

                    #[allow(unused_variables)]
                    fn visit_str<E>(self, value: &str) -> std::result::Result<GeneratedField, E>
                    where
                        E: serde::de::Error,
                    {
                        match value {
                            "runAsUsername" | "run_as_username" => Ok(GeneratedField::RunAsUsername),
                            "credentialSpec" | "credential_spec" => Ok(GeneratedField::CredentialSpec),
                            "hostProcess" | "host_process" => Ok(GeneratedField::HostProcess),
                            "namespaceOptions" | "namespace_options" => Ok(GeneratedField::NamespaceOptions),
                            _ => Ok(GeneratedField::__SkipField__),
                        }
                    }
                }
                deserializer.deserialize_identifier(GeneratedVisitor)
            }
        }
        struct GeneratedVisitor;
        impl<'de> serde::de::Visitor<'de> for GeneratedVisitor {
            type Value = WindowsSandboxSecurityContext;

            fn expecting(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                formatter.write_str("struct runtime.v1.WindowsSandboxSecurityContext")
            }

            fn visit_map<V>(self, mut map_: V) -> std::result::Result<WindowsSandboxSecurityContext, V::Error>
                where
                    V: serde::de::MapAccess<'de>,
            {
                let mut run_as_username__ = None;
                let mut credential_spec__ = None;
                let mut host_process__ = None;
                let mut namespace_options__ = None;
                while let Some(k) = map_.next_key()? {
                    match k {
                        GeneratedField::RunAsUsername => {
                            if run_as_username__.is_some() {
                                return Err(serde::de::Error::duplicate_field("runAsUsername"));
                            }
                            run_as_username__ = Some(map_.next_value()?);
                        }
                        GeneratedField::CredentialSpec => {
                            if credential_spec__.is_some() {
                                return Err(serde::de::Error::duplicate_field("credentialSpec"));
                            }
                            credential_spec__ = Some(map_.next_value()?);
                        }
                        GeneratedField::HostProcess => {
                            if host_process__.is_some() {
                                return Err(serde::de::Error::duplicate_field("hostProcess"));
                            }
                            host_process__ = Some(map_.next_value()?);
                        }
                        GeneratedField::NamespaceOptions => {
                            if namespace_options__.is_some() {
                                return Err(serde::de::Error::duplicate_field("namespaceOptions"));
                            }
                            namespace_options__ = map_.next_value()?;
                        }
                        GeneratedField::__SkipField__ => {
                            let _ = map_.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(WindowsSandboxSecurityContext {
                    run_as_username: run_as_username__.unwrap_or_default(),
                    credential_spec: credential_spec__.unwrap_or_default(),
                    host_process: host_process__.unwrap_or_default(),
                    namespace_options: namespace_options__,
                })
            }
        }
        deserializer.deserialize_struct("runtime.v1.WindowsSandboxSecurityContext", FIELDS, GeneratedVisitor)
    }
}
